# -*- test-case-name: tests.test_dispatcher_sets -*-
"""
Dispatcher sets: named groups of destinations (gateways, media servers,
other proxies) a request is load-balanced over, as Kamailio's dispatcher
module does.

Selection is plain code: L{DispatcherSet.select} orders the live members
for one request (the first is used, the others are its failover order):

  - C{round_robin}: each request starts one member further;
  - C{weighted}: smooth weighted round robin (member with weight 3 gets
    three requests out of every four next to one with weight 1);
  - C{hash_callid} / C{hash_from}: rendezvous hashing of the Call-ID or
    From user, so a call always reaches the same member while it is up,
    and only the calls of a failed member move;
  - C{priority}: lowest C{priority} first, the next on failure.

Health: every C{probe_interval} seconds each member gets an OPTIONS
(a client transaction through the transaction layer); C{probe_failures}
consecutive failures (timeout, unreachable, 408, 5xx, 6xx) mark it down and
C{probe_successes} consecutive answers mark it up again.  Sets are reloaded
at runtime with L{DispatcherSets.reload} (from the manhole:
C{routing.dispatcherSets.reload()}), keeping the health of members that
stay.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger

from voipgw.config import ConfigError, readINI
from voipgw.routing.config import ALGORITHMS, DestinationSpec, RoutingConfig, parseDispatcherSets
from voipgw.routing.target import addressOfURI
from voipgw.sip.errors import SIPParseError
from voipgw.sip.message import Request, Response
from voipgw.sip.uri import URI
from voipgw.stats import Counters
from voipgw.transport.address import Address


@dataclass(eq=False)
class Member:
    """One destination of a set and its health."""

    uri: URI
    weight: int = 1
    priority: int = 0
    up: bool = True
    failures: int = 0
    successes: int = 0
    probing: bool = False
    currentWeight: int = 0
    lastProbe: Optional[float] = None
    key: str = field(default="")

    def __post_init__(self) -> None:
        if not self.key:
            self.key = str(self.uri)

    def state(self) -> dict[str, object]:
        return {"uri": self.key, "weight": self.weight, "priority": self.priority, "up": self.up,
                "failures": self.failures, "successes": self.successes}


def _score(key: str, member: Member) -> bytes:
    return hashlib.blake2b(f"{key}\x00{member.key}".encode("utf-8", "surrogateescape"), digest_size=8).digest()


class DispatcherSet:
    """A named set of members with a selection algorithm (no I/O)."""

    def __init__(self, name: str, members: list[Member], algorithm: str = "round_robin") -> None:
        if algorithm not in ALGORITHMS:
            raise ConfigError(f"dispatcher set {name!r}: unknown algorithm {algorithm!r}")
        self.name = name
        self.members = members
        self.algorithm = algorithm
        self._next = 0

    @classmethod
    def fromSpecs(cls, name: str, specs: list[DestinationSpec], algorithm: str = "round_robin") -> "DispatcherSet":
        return cls(name, [Member(URI.parse(s.uri), s.weight, s.priority) for s in specs], algorithm)

    def live(self) -> list[Member]:
        return [m for m in self.members if m.up]

    def select(self, request: Optional[Request] = None, key: Optional[str] = None) -> list[Member]:
        """The live members in the order to try them for C{request}."""
        live = self.live()
        if len(live) <= 1:
            return live
        algorithm = self.algorithm
        if algorithm == "round_robin":
            start = self._next % len(live)
            self._next += 1
            return live[start:] + live[:start]
        if algorithm == "weighted":
            weighted = [m for m in live if m.weight > 0] or live
            total = sum(m.weight for m in weighted)
            for m in weighted:
                m.currentWeight += m.weight
            chosen = max(weighted, key=lambda m: m.currentWeight)
            chosen.currentWeight -= total
            rest = sorted((m for m in live if m is not chosen), key=lambda m: -m.weight)
            return [chosen] + rest
        if algorithm == "priority":
            return sorted(live, key=lambda m: m.priority)
        if key is None:
            key = _hashKey(request, algorithm)
        return sorted(live, key=lambda m: _score(key, m), reverse=True)


def _hashKey(request: Optional[Request], algorithm: str) -> str:
    if request is None:
        return ""
    try:
        if algorithm == "hash_from":
            uri = request.fromAddress.uri
            return (uri.user or uri.host) if uri is not None else ""
        return request.callId
    except SIPParseError:
        return ""


class _Probe:
    """The client transaction user of one OPTIONS probe."""

    def __init__(self, sets: "DispatcherSets", member: Member) -> None:
        self.sets = sets
        self.member = member
        self.transaction: Any = None
        self.done = False
        self.timer = sets.clock.callLater(sets.probeTimeout, self.expired)

    def finish(self, ok: bool) -> None:
        if self.done:
            return
        self.done = True
        if self.timer.active():
            self.timer.cancel()
        self.sets.probeResult(self.member, ok)

    def expired(self) -> None:
        if self.transaction is not None and self.transaction.state != "terminated":
            self.transaction.terminate()
        self.finish(False)

    def responseReceived(self, response: Response, transaction: Any) -> None:
        if response.code >= 200:
            self.finish(response.code < 500 and response.code != 408)

    def timedOut(self, transaction: Any) -> None:
        self.finish(False)

    def transportFailed(self, transaction: Any, reason: str) -> None:
        self.finish(False)


class DispatcherSets:
    """
    All dispatcher sets of the node, their probing and their reloading.

    @param sets: name -> L{DispatcherSet}.
    @param transactions: the transaction layer (for OPTIONS probes).
    @param clock: drives the probe interval and timeouts.
    @param loader: called by L{reload}: returns (or fires a Deferred with) a
        dict of name -> (algorithm, list of L{DestinationSpec}).
    @param resolver: resolves member host names (RFC 3263) for probes.
    """

    log = Logger()

    def __init__(
        self,
        sets: dict[str, DispatcherSet],
        transactions: Any,
        clock: Any,
        probeInterval: float = 10.0,
        probeTimeout: float = 5.0,
        probeFailures: int = 3,
        probeSuccesses: int = 2,
        loader: Optional[Callable[[], Any]] = None,
        resolver: Any = None,
        counters: Optional[Counters] = None,
    ) -> None:
        self.sets = sets
        self.transactions = transactions
        self.clock = clock
        self.probeInterval = probeInterval
        self.probeTimeout = probeTimeout
        self.probeFailures = probeFailures
        self.probeSuccesses = probeSuccesses
        self.loader = loader
        self.resolver = resolver
        self.counters = counters if counters is not None else Counters()
        self._timer: Any = None
        self.running = False

    @classmethod
    def fromConfig(cls, config: RoutingConfig, transactions: Any, clock: Any, resolver: Any = None,
                   counters: Optional[Counters] = None, database: Any = None) -> "DispatcherSets":
        """Sets from C{[routing]} plus, when set, C{dispatcher_file} and a C{dispatcher} table."""

        def load() -> Any:
            specs: dict[str, tuple[str, list[DestinationSpec]]] = {
                name: (config.dispatcherAlgorithms.get(name, "round_robin"), members)
                for name, members in config.dispatcherSets.items()
            }
            if config.dispatcherFile:
                specs.update(readDispatcherFile(config.dispatcherFile, config.dispatcherAlgorithms))
            if database is None:
                return specs
            d = loadDispatcherTable(database)

            def merge(rows: dict[str, list[DestinationSpec]]) -> dict[str, tuple[str, list[DestinationSpec]]]:
                for name, members in rows.items():
                    specs[name] = (config.dispatcherAlgorithms.get(name, "round_robin"), members)
                return specs

            return d.addCallback(merge)

        sets = cls({}, transactions, clock, config.probeInterval, config.probeTimeout,
                   config.probeFailures, config.probeSuccesses, load, resolver, counters)
        if database is None:
            sets._apply(load())
        return sets

    # -- selection ---------------------------------------------------------

    def select(self, name: str, request: Optional[Request] = None) -> list[Member]:
        """Live members of set C{name} in the order to try them; C{[]} if none (or no such set)."""
        dset = self.sets.get(name)
        if dset is None:
            return []
        return dset.select(request)

    def find(self, name: str, uri: Any) -> Optional[Member]:
        dset = self.sets.get(name)
        if dset is None or uri is None:
            return None
        key = str(uri)
        for member in dset.members:
            if member.key == key:
                return member
        return None

    def reportFailure(self, name: str, uri: Any) -> None:
        """A request forwarded to a member failed (timeout, unreachable): count it as a probe failure."""
        member = self.find(name, uri)
        if member is not None and self.probeInterval > 0:
            self.probeResult(member, False)

    # -- probing -------------------------------------------------------------

    def start(self) -> None:
        self.running = True
        if not self.sets and self.loader is not None:
            self.reload().addErrback(lambda f: self.log.failure("loading dispatcher sets failed", f))
        if self.probeInterval > 0:
            self._timer = self.clock.callLater(0, self._probeAll)

    def stop(self) -> None:
        self.running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _probeAll(self) -> None:
        self._timer = None
        if not self.running:
            return
        for dset in list(self.sets.values()):
            for member in dset.members:
                if not member.probing:
                    self.probe(member)
        self._timer = self.clock.callLater(self.probeInterval, self._probeAll)

    def probe(self, member: Member) -> None:
        """Send one OPTIONS to C{member}."""
        member.probing = True
        member.lastProbe = self.clock.seconds()
        self.counters.increment("dispatcher.probes")
        address = addressOfURI(member.uri)
        if address is not None:
            self._sendProbe(member, address)
            return
        if self.resolver is None:
            self.probeResult(member, False)
            return
        d = self.resolver.resolve(member.uri)
        d.addCallbacks(lambda addresses: self._sendProbe(member, addresses[0]), lambda f: self.probeResult(member, False))

    def _sendProbe(self, member: Member, address: Address) -> None:
        layer = self.transactions
        try:
            via = layer.localVia(address)
        except ValueError:
            self.probeResult(member, False)
            return
        uri = member.uri.copy(user=None, params={k: v for k, v in member.uri.params.items() if k == "transport"})
        request = Request("OPTIONS", uri, [
            ("Via", str(via)),
            ("Max-Forwards", "70"),
            ("From", f"<sip:dispatcher@{via.host}>;tag={layer.newTag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", f"{layer.newTag()}{layer.newTag()}@{via.host}"),
            ("CSeq", "1 OPTIONS"),
        ])
        probe = _Probe(self, member)
        probe.transaction = layer.request(request, address, probe, addVia=False)

    def probeResult(self, member: Member, ok: bool) -> None:
        member.probing = False
        if ok:
            member.failures = 0
            member.successes += 1
            if not member.up and member.successes >= self.probeSuccesses:
                member.up = True
                self.counters.increment("dispatcher.member_up")
                self.log.info("dispatcher member {uri} is up", uri=member.key)
        else:
            member.successes = 0
            member.failures += 1
            self.counters.increment("dispatcher.probe_failures")
            if member.up and member.failures >= self.probeFailures:
                member.up = False
                self.counters.increment("dispatcher.member_down")
                self.log.warn("dispatcher member {uri} is down after {n} failures", uri=member.key, n=member.failures)

    # -- reloading -------------------------------------------------------------

    def reload(self) -> "defer.Deferred[dict[str, int]]":
        """
        Re-read the sets (configuration file, database table) and replace
        them; members that stay keep their health.  Fires with set name ->
        member count; on an error the old sets stay and the Deferred fails.
        """
        if self.loader is None:
            return defer.succeed({name: len(s.members) for name, s in self.sets.items()})
        d = defer.maybeDeferred(self.loader)
        d.addCallback(self._apply)
        return d

    def _apply(self, specs: dict[str, tuple[str, list[DestinationSpec]]]) -> dict[str, int]:
        old = {(name, m.key): m for name, s in self.sets.items() for m in s.members}
        sets: dict[str, DispatcherSet] = {}
        for name, (algorithm, members) in specs.items():
            dset = DispatcherSet.fromSpecs(name, members, algorithm)
            for i, member in enumerate(dset.members):
                previous = old.get((name, member.key))
                if previous is not None:
                    previous.weight, previous.priority = member.weight, member.priority
                    dset.members[i] = previous
            sets[name] = dset
        self.sets = sets
        self.counters.increment("dispatcher.reloads")
        return {name: len(s.members) for name, s in sets.items()}

    def state(self) -> dict[str, Any]:
        """Plain data for the manhole and the management API."""
        return {name: {"algorithm": s.algorithm, "members": [m.state() for m in s.members]} for name, s in self.sets.items()}


def readDispatcherFile(path: str, algorithms: dict[str, str]) -> dict[str, tuple[str, list[DestinationSpec]]]:
    """
    Read an INI file whose C{[dispatcher]} section holds C{<set> = uri, ...}
    and optional C{algorithm.<set> = ...} lines.  Raises L{ConfigError}.
    """
    sections = readINI(path)
    if "dispatcher" not in sections:
        raise ConfigError(f"dispatcher file {path}: no [dispatcher] section")
    section = sections["dispatcher"]
    where = f"{os.path.basename(path)} [dispatcher]"
    sets = parseDispatcherSets({f"dispatcher.{k}": v for k, v in section.items() if not k.startswith("algorithm.")}, where)
    result: dict[str, tuple[str, list[DestinationSpec]]] = {}
    for name, members in sets.items():
        algorithm = section.get(f"algorithm.{name}", algorithms.get(name, "round_robin")).strip().lower()
        if algorithm not in ALGORITHMS:
            raise ConfigError(f"{where} algorithm.{name}: unknown algorithm {algorithm!r}")
        result[name] = (algorithm, members)
    return result


def dispatcherTable(metadata: Any) -> Any:
    """The C{dispatcher} table: one row per member (set_name, uri, weight, priority)."""
    from sqlalchemy import Column, Integer, String, Table

    return Table(
        "dispatcher", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("set_name", String(64), nullable=False, index=True),
        Column("uri", String(255), nullable=False),
        Column("weight", Integer, nullable=False, server_default="1"),
        Column("priority", Integer, nullable=False, server_default="0"),
    )


def loadDispatcherTable(database: Any) -> "defer.Deferred[dict[str, list[DestinationSpec]]]":
    """Read every set from the C{dispatcher} table (on the database's thread pool)."""
    from sqlalchemy import MetaData, select

    table = dispatcherTable(MetaData())

    def read(conn: Any) -> list[tuple[str, str, int, int]]:
        rows = conn.execute(select(table.c.set_name, table.c.uri, table.c.weight, table.c.priority).order_by(table.c.id))
        return [tuple(row) for row in rows]

    def build(rows: list[tuple[str, str, int, int]]) -> dict[str, list[DestinationSpec]]:
        sets: dict[str, list[DestinationSpec]] = {}
        for name, uri, weight, priority in rows:
            spec = DestinationSpec.parse(uri, f"dispatcher table, set {name!r}")
            sets.setdefault(name, []).append(DestinationSpec(spec.uri, int(weight), int(priority)))
        return sets

    return database.runInteraction("dispatcher.load", read).addCallback(build)
