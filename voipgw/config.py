# -*- test-case-name: tests.test_config -*-
"""
The node's configuration: an INI file (see C{docs/configuration.md})
read into typed sections.  Every bad value raises L{ConfigError} naming the
section, key and fault.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from typing import Iterable, Optional

from voipgw.errors import ConfigError
from voipgw.sip.errors import SIPParseError
from voipgw.sip.message import Limits
from voipgw.sip.uri import validateHost
from voipgw.transaction.timers import TimerSettings
from voipgw.transport.address import Address, parseListen
from voipgw.transport.manager import TransportSettings
from voipgw.transport.tls import TLSSettings

DEFAULT_LISTEN = ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060")


def splitList(value: str) -> list[str]:
    """C{"a, b,c"} or one item per line -> C{["a", "b", "c"]}."""
    return [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]


class Section:
    """Typed access to one INI section; remembers which keys were read."""

    def __init__(self, name: str, values: dict[str, str]) -> None:
        self.name = name
        self.values = {k.lower(): v for k, v in values.items()}

    def _fail(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"[{self.name}] {key}: {why}")

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        value = self.values.get(key)
        return value.strip() if value is not None else default

    def getList(self, key: str, default: Iterable[str] = ()) -> list[str]:
        value = self.values.get(key)
        return splitList(value) if value is not None else list(default)

    def getFloat(self, key: str, default: float, minimum: float = 0.0, maximum: float = float("inf")) -> float:
        value = self.values.get(key)
        if value is None or not value.strip():
            return default
        try:
            number = float(value)
        except ValueError:
            raise self._fail(key, f"expected a number, got {value!r}") from None
        if not minimum <= number <= maximum:
            raise self._fail(key, f"{number} is outside {minimum}..{maximum}")
        return number

    def getInt(self, key: str, default: int, minimum: int = 0, maximum: int = 2**31) -> int:
        value = self.values.get(key)
        if value is None or not value.strip():
            return default
        try:
            number = int(value)
        except ValueError:
            raise self._fail(key, f"expected a whole number, got {value!r}") from None
        if not minimum <= number <= maximum:
            raise self._fail(key, f"{number} is outside {minimum}..{maximum}")
        return number

    def getBool(self, key: str, default: bool) -> bool:
        value = self.values.get(key)
        if value is None or not value.strip():
            return default
        lowered = value.strip().lower()
        if lowered in ("1", "yes", "true", "on"):
            return True
        if lowered in ("0", "no", "false", "off"):
            return False
        raise self._fail(key, f"expected yes or no, got {value!r}")


@dataclass
class ManholeConfig:
    """The manhole: off unless C{listen} is set; needs credentials."""

    listen: Optional[str] = None
    authorizedKeys: Optional[str] = None
    passwords: Optional[str] = None
    hostKey: Optional[str] = None
    allowRemote: bool = False


@dataclass
class NodeConfig:
    """Everything needed to build a node."""

    listen: list[Address] = field(default_factory=lambda: [parseListen(s) for s in DEFAULT_LISTEN])
    domains: list[str] = field(default_factory=list)
    dataDir: str = "data"
    #: The address advertised for wildcard listeners ([node] advertise).
    advertise: Optional[str] = None
    transport: TransportSettings = field(default_factory=TransportSettings)
    timers: TimerSettings = field(default_factory=TimerSettings)
    manhole: ManholeConfig = field(default_factory=ManholeConfig)
    #: Seconds between a worker's freezes of its old objects
    #: (L{voipgw.gcfreeze}); 0 turns freezing off ([node] gc_freeze_interval).
    gcFreezeInterval: float = 1.0
    #: Raw sections for services that parse their own ([subscribers], ...).
    sections: dict[str, dict[str, str]] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, str]:
        return dict(self.sections.get(name, {}))


def readINI(path: str) -> dict[str, dict[str, str]]:
    """Read an INI file into plain dicts; a missing or malformed file is a ConfigError."""
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except configparser.Error as e:
        raise ConfigError(f"config file {path}: {e}") from None
    return {name: dict(parser[name]) for name in parser.sections()}


def parseConfig(sections: dict[str, dict[str, str]]) -> NodeConfig:
    """Build a L{NodeConfig} from INI sections (missing ones take defaults)."""
    config = NodeConfig(sections={k.lower(): v for k, v in sections.items()})
    node = Section("node", config.section("node"))
    listen = node.getList("listen", DEFAULT_LISTEN)
    config.listen = parseListeners(listen)
    advertise = (node.get("advertise") or "").strip().lower() or None
    if advertise is not None:
        try:
            validateHost(advertise if ":" not in advertise or advertise.startswith("[") else f"[{advertise}]")
        except SIPParseError as e:
            raise ConfigError(f"[node] advertise: {e.reason}") from None
        advertise = advertise.strip("[]")
    elif any(a.host in ("0.0.0.0", "::") for a in config.listen):
        raise ConfigError(
            "[node] listen: a listener on 0.0.0.0 or :: needs [node] advertise (or --advertise): "
            "the address clients reach this node at, used in Via and Record-Route"
        )
    config.advertise = advertise
    config.domains = [d.lower() for d in node.getList("domain")] or defaultDomains(config.listen, advertise)
    config.dataDir = node.get("data_dir", "data") or "data"
    config.gcFreezeInterval = node.getFloat("gc_freeze_interval", 1.0, 0.0, 3600.0)

    transport = Section("transport", config.section("transport"))
    limits = Limits(
        maxMessageSize=transport.getInt("max_message_size", 65535, 1024, 1 << 24),
        maxHeaders=transport.getInt("max_headers", 256, 16, 10_000),
        maxLineLength=transport.getInt("max_line_length", 8192, 256, 1 << 20),
    )
    tls = TLSSettings(
        certificate=transport.get("tls_certificate"),
        privateKey=transport.get("tls_private_key"),
        ca=transport.get("tls_ca"),
        verifyClients=transport.getBool("tls_verify_clients", False),
        verifyServers=transport.getBool("tls_verify_servers", True),
    )
    config.transport = TransportSettings(
        limits=limits,
        idleTimeout=transport.getFloat("idle_timeout", 300.0, 0.0),
        connectTimeout=transport.getFloat("connect_timeout", 5.0, 0.1, 120.0),
        tls=tls,
        advertise=config.advertise,
        udpReceiveBuffer=transport.getInt("udp_receive_buffer", 4 << 20, 0, 1 << 30),
    )
    if any(a.transport == "tls" for a in config.listen) and not (tls.certificate and tls.privateKey):
        raise ConfigError("[transport] a tls: listener needs tls_certificate and tls_private_key")
    if tls.verifyClients and not tls.ca:
        raise ConfigError("[transport] tls_verify_clients needs tls_ca")

    timers = Section("timers", config.section("timers"))
    try:
        config.timers = TimerSettings(
            T1=timers.getFloat("t1", 0.5, 0.01, 60),
            T2=timers.getFloat("t2", 4.0, 0.01, 600),
            T4=timers.getFloat("t4", 5.0, 0.01, 600),
        )
    except ValueError as e:
        raise ConfigError(f"[timers] {e}") from None

    manhole = Section("manhole", config.section("manhole"))
    config.manhole = ManholeConfig(
        listen=manhole.get("listen") or None,
        authorizedKeys=manhole.get("authorized_keys") or None,
        passwords=manhole.get("passwords") or None,
        hostKey=manhole.get("host_key") or None,
        allowRemote=manhole.getBool("allow_remote", False),
    )
    return config


def defaultDomains(listen: Iterable[Address], advertise: Optional[str] = None) -> list[str]:
    """
    The domains of a node configured with none: C{localhost} and the
    addresses it listens on (not wildcards), so the embedded default
    registers C{alice@localhost} or C{alice@127.0.0.1} out of the box.
    """
    domains = ["localhost"] + ([advertise] if advertise else [])
    for address in listen:
        host = address.host.lower()
        if host not in ("0.0.0.0", "::") and host not in domains:
            domains.append(host)
    return domains


def parseListeners(specs: Iterable[str]) -> list[Address]:
    listeners = []
    for spec in specs:
        try:
            listeners.append(parseListen(spec))
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if not listeners:
        raise ConfigError("[node] listen: at least one listener is needed")
    return listeners
