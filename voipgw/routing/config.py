# -*- test-case-name: tests.test_routing_config -*-
"""
The C{[routing]} section: typed, validated settings of the routing service.

Every fault raises L{voipgw.config.ConfigError} naming the key and why.
"""

from __future__ import annotations

import importlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from voipgw.config import ConfigError, Section, splitList
from voipgw.sip.errors import SIPParseError
from voipgw.sip.uri import URI

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

FORK_MODES = ("parallel", "serial")
_KNOWN_KEYS = frozenset([
    "trusted", "application", "fork_mode", "timer_c", "record_route", "probe_interval",
    "probe_timeout", "probe_failures", "probe_successes", "retry_after", "dispatcher_file",
    "dispatcher_db", "failover_codes",
])
_KNOWN_PREFIXES = ("dispatcher.", "dispatcher_algorithm.", "dispatcher_route.")
ALGORITHMS = ("round_robin", "weighted", "hash_callid", "hash_from", "priority")
#: Timer C must exceed three minutes (RFC 3261 §16.6 step 11); shorter values
#: are accepted for tests and labs only.
DEFAULT_TIMER_C = 181.0


@dataclass(frozen=True)
class DestinationSpec:
    """One member of a dispatcher set as configured: C{sip:host:port;weight=2;priority=1}."""

    uri: str
    weight: int = 1
    priority: int = 0

    @classmethod
    def parse(cls, text: str, where: str) -> "DestinationSpec":
        try:
            uri = URI.parse(text.strip())
        except SIPParseError as e:
            raise ConfigError(f"{where}: bad destination {text.strip()!r}: {e.reason}") from None
        if not uri.isSIP:
            raise ConfigError(f"{where}: destination {text.strip()!r} is not a sip: or sips: URI")
        params = dict(uri.params)
        weight = _intParam(params.pop("weight", None), 1, where, "weight", 0, 1000)
        priority = _intParam(params.pop("priority", None), 0, where, "priority", 0, 1000)
        return cls(str(uri.copy(params=params)), weight, priority)


def _intParam(value: Optional[str], default: int, where: str, name: str, low: int, high: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ConfigError(f"{where}: {name} must be a whole number in {low}..{high}, got {value!r}")
    return int(value)


def parseNetworks(values: list[str], where: str) -> list[Network]:
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not an address or CIDR network") from None
    return networks


@dataclass
class RoutingConfig:
    """
    Settings of the routing service (see C{docs/routing.md}).

    @ivar trusted: source networks whose requests are never challenged.
    @ivar application: C{"package.module:Class"} of a L{RoutingService}
        subclass, or C{None} for the stock one.
    @ivar forkMode: C{"parallel"} (all contacts at once) or C{"serial"}
        (groups of equal q-value, highest first).
    @ivar timerC: seconds an INVITE branch may ring (RFC 3261 §16.6 step 11).
    @ivar recordRoute: insert Record-Route in dialog-creating requests.
    @ivar dispatcherSets: set name -> its destinations.
    @ivar dispatcherAlgorithms: set name -> selection algorithm.
    @ivar dispatcherRoutes: set name -> Request-URI domains load-balanced over it.
    @ivar failoverCodes: final responses after which a set member fails over.
    """

    trusted: list[Network] = field(default_factory=list)
    application: Optional[str] = None
    forkMode: str = "parallel"
    timerC: float = DEFAULT_TIMER_C
    recordRoute: bool = True
    dispatcherSets: dict[str, list[DestinationSpec]] = field(default_factory=dict)
    dispatcherAlgorithms: dict[str, str] = field(default_factory=dict)
    dispatcherRoutes: dict[str, list[str]] = field(default_factory=dict)
    dispatcherFile: Optional[str] = None
    probeInterval: float = 10.0
    probeTimeout: float = 5.0
    probeFailures: int = 3
    probeSuccesses: int = 2
    failoverCodes: frozenset[int] = frozenset({500, 502, 503, 504})
    retryAfter: int = 5
    #: URL of a database whose C{dispatcher} table holds more sets.
    dispatcherDatabase: Optional[str] = None

    @classmethod
    def fromSection(cls, values: dict[str, str]) -> "RoutingConfig":
        """Build from the raw C{[routing]} section; raise L{ConfigError} on any fault."""
        section = Section("routing", values)
        for key in section.values:
            if key not in _KNOWN_KEYS and not key.startswith(_KNOWN_PREFIXES):
                raise ConfigError(f"[routing] unknown option {key!r}")
        config = cls()
        config.trusted = parseNetworks(section.getList("trusted"), "[routing] trusted")
        application = section.get("application")
        if application:
            if ":" not in application or not all(application.partition(":")[::2]):
                raise ConfigError(f"[routing] application: expected package.module:ClassName, got {application!r}")
            config.application = application
        forkMode = (section.get("fork_mode") or "parallel").lower()
        if forkMode not in FORK_MODES:
            raise ConfigError(f"[routing] fork_mode: expected parallel or serial, got {forkMode!r}")
        config.forkMode = forkMode
        config.timerC = section.getFloat("timer_c", DEFAULT_TIMER_C, 1.0, 3600.0)
        config.recordRoute = section.getBool("record_route", True)
        config.probeInterval = section.getFloat("probe_interval", 10.0, 0.0, 3600.0)
        config.probeTimeout = section.getFloat("probe_timeout", 5.0, 0.1, 120.0)
        config.probeFailures = section.getInt("probe_failures", 3, 1, 100)
        config.probeSuccesses = section.getInt("probe_successes", 2, 1, 100)
        config.retryAfter = section.getInt("retry_after", 5, 0, 3600)
        config.dispatcherFile = section.get("dispatcher_file") or None
        config.dispatcherDatabase = section.get("dispatcher_db") or None
        codes = section.getList("failover_codes", ["500", "502", "503", "504"])
        parsed = set()
        for code in codes:
            if not code.isdigit() or not 300 <= int(code) <= 699:
                raise ConfigError(f"[routing] failover_codes: {code!r} is not a final non-2xx status code")
            parsed.add(int(code))
        config.failoverCodes = frozenset(parsed)
        config.dispatcherSets = parseDispatcherSets(section.values, "[routing]")
        for key, value in section.values.items():
            if key.startswith("dispatcher_algorithm."):
                name = key.partition(".")[2]
                algorithm = value.strip().lower()
                if algorithm not in ALGORITHMS:
                    raise ConfigError(f"[routing] {key}: unknown algorithm {algorithm!r} (use {', '.join(ALGORITHMS)})")
                if name not in config.dispatcherSets and not config.dispatcherFile:
                    raise ConfigError(f"[routing] {key}: no dispatcher set named {name!r}")
                config.dispatcherAlgorithms[name] = algorithm
            elif key.startswith("dispatcher_route."):
                name = key.partition(".")[2]
                if name not in config.dispatcherSets and not config.dispatcherFile:
                    raise ConfigError(f"[routing] {key}: no dispatcher set named {name!r}")
                config.dispatcherRoutes[name] = [d.lower() for d in splitList(value)]
        return config


def parseDispatcherSets(values: dict[str, str], where: str) -> dict[str, list[DestinationSpec]]:
    """C{dispatcher.<set> = uri;weight=..;priority=.., uri...} keys -> set name -> members."""
    sets: dict[str, list[DestinationSpec]] = {}
    for key, value in values.items():
        key = key.lower()
        if not key.startswith("dispatcher."):
            continue
        name = key.partition(".")[2]
        if not name:
            raise ConfigError(f"{where} {key}: missing set name")
        members = [DestinationSpec.parse(item, f"{where} {key}") for item in splitList(value)]
        if not members:
            raise ConfigError(f"{where} {key}: the set has no destinations")
        sets[name] = members
    return sets


def loadApplicationClass(spec: str) -> Any:
    """
    Import C{"package.module:ClassName"} and return the class, which must be
    a L{voipgw.routing.service.RoutingService} subclass.  Raises
    L{ConfigError} saying what is wrong.
    """
    from voipgw.routing.service import RoutingService

    moduleName, colon, className = spec.partition(":")
    if not colon or not moduleName or not className:
        raise ConfigError(f"[routing] application: expected package.module:ClassName, got {spec!r}")
    try:
        module = importlib.import_module(moduleName)
    except ImportError as e:
        raise ConfigError(f"[routing] application: cannot import module {moduleName!r}: {e}") from None
    except Exception as e:
        raise ConfigError(f"[routing] application: importing {moduleName!r} failed: {e.__class__.__name__}: {e}") from None
    cls = getattr(module, className, None)
    if cls is None:
        raise ConfigError(f"[routing] application: module {moduleName!r} has no attribute {className!r}")
    if not isinstance(cls, type) or not issubclass(cls, RoutingService):
        raise ConfigError(f"[routing] application: {spec!r} is not a subclass of voipgw.routing.RoutingService")
    return cls
