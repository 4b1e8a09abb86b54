# -*- test-case-name: tests.test_partitioning -*-
"""
Partitioning of location data as a pure object.

Nothing here touches a reactor, a clock or a database: times are passed in,
decisions are returned as values, and the same code runs in the node, in
C{voipgw-admin} and in unit tests.

The hash
========
An AOR (already normalised by L{voipgw.location.normaliseAOR}) is encoded as
UTF-8 and hashed with BLAKE2b with an 8-byte digest, read as a big-endian
unsigned 64-bit integer (L{aorHash}).  That key is mapped to one of C{n}
partitions with Lamping and Veach's jump consistent hash (L{jumpHash},
U{https://arxiv.org/abs/1406.2294}).  Both are fully specified, so every
node, process, Python version and the admin tool agree; and growing from
C{n} to C{n + 1} partitions moves only the keys that go to the new
partition, about C{1 / (n + 1)} of them (C{crc32 % n}, as Kamailio's
p_usrloc uses, moves about C{n / (n + 1)}).
"""

from __future__ import annotations

import copy as _copy
import enum
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

from sqlalchemy.engine import make_url

_MASK64 = 0xFFFFFFFFFFFFFFFF


def aorHash(aor: str) -> int:
    """The 64-bit key of a normalised AOR: BLAKE2b-64 of its UTF-8, big-endian."""
    return int.from_bytes(hashlib.blake2b(aor.encode("utf-8"), digest_size=8).digest(), "big")


def jumpHash(key: int, buckets: int) -> int:
    """
    Lamping & Veach jump consistent hash of a 64-bit C{key} into
    C{range(buckets)}.
    """
    if buckets <= 0:
        raise ValueError("buckets must be positive")
    key &= _MASK64
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def partitionOf(aor: str, partitions: int) -> int:
    """The partition (C{0 .. partitions-1}) of a normalised AOR."""
    return jumpHash(aorHash(aor), partitions)


def serverOf(url: str) -> str:
    """
    The server a database URL points at, as C{host:port} (or the unix
    socket), used to check that copies do not share a server.
    """
    u = make_url(url)
    socket = u.query.get("unix_socket")
    if socket:
        return f"unix:{socket if isinstance(socket, str) else socket[0]}"
    return f"{(u.host or 'localhost').lower()}:{u.port or 3306}"


def hostOf(url: str) -> str:
    """The host of a database URL (the default risk group)."""
    return (make_url(url).host or "localhost").lower()


class MapError(ValueError):
    """A partition map that would lose redundancy or data; the message says why."""


class CopyStatus(str, enum.Enum):
    """
    The state of one copy (a database) in the partition map.

      - C{on}: serves reads and writes.
      - C{syncing}: being resynchronised; receives writes, serves no reads.
      - C{off}: failed; neither; it comes back through a resync.
      - C{maintenance}: taken out by an operator; neither; nodes leave it
        alone until it is enabled (which makes it C{off}, hence resynced).
    """

    ON = "on"
    SYNCING = "syncing"
    OFF = "off"
    MAINTENANCE = "maintenance"


@dataclass
class CopyState:
    """
    One row of the partition map: a database holding one copy of a
    partition, or a spare (C{partition is None}, C{spare} true).
    """

    url: str
    partition: int | None
    copyNo: int = 0
    status: CopyStatus = CopyStatus.ON
    errors: int = 0
    failoverTime: float = 0.0
    spare: bool = False
    riskGroup: str = ""
    syncOwner: str = ""
    syncStarted: float = 0.0

    def __post_init__(self) -> None:
        self.status = CopyStatus(self.status)
        if not self.riskGroup:
            self.riskGroup = hostOf(self.url)

    @property
    def server(self) -> str:
        return serverOf(self.url)

    @property
    def readable(self) -> bool:
        return not self.spare and self.status is CopyStatus.ON

    @property
    def writable(self) -> bool:
        return not self.spare and self.status in (CopyStatus.ON, CopyStatus.SYNCING)

    def asDict(self) -> dict[str, object]:
        """Plain data, for the manhole, the admin tool and logs."""
        d = asdict(self)
        d["status"] = self.status.value
        d["server"] = self.server
        return d


@dataclass(frozen=True)
class Decision:
    """
    A failover decision taken by L{PartitionMap}: C{action} is C{"off"} (a
    copy was taken out), C{"on"} (a copy came back without resync because no
    peer was alive), C{"resync"} (a returning copy must be resynchronised from
    C{source}), C{"promote"} (C{spare} replaces C{url} in C{partition}) or
    C{"spare-on"} (a spare became available again).
    """

    action: str
    url: str
    partition: int | None
    reason: str = ""
    source: str | None = None
    spare: str | None = None
    copyNo: int = 0


@dataclass
class PartitionMap:
    """
    The partition map: C{partitions} partitions, each with one or two copies,
    plus a pool of spares.  Mutating methods record a decision and return it;
    persisting it (to the shared map database) is the caller's business.

    Invariants (L{validate}): partitions are numbered C{0 .. partitions-1}, a
    database URL appears once, the copies of one partition are on different
    servers and in different risk groups.
    """

    partitions: int
    copies: list[CopyState] = field(default_factory=list)
    #: C{False} while a map is being built (C{voipgw-admin location add}):
    #: partitions may still lack copies; every other rule holds.
    requireComplete: bool = True

    def __post_init__(self) -> None:
        self.validate()

    # -- structure -------------------------------------------------------

    def validate(self) -> None:
        if self.partitions < 1:
            raise MapError("a partition map needs at least one partition")
        seen: dict[str, CopyState] = {}
        for c in self.copies:
            if c.url in seen:
                raise MapError(f"database {c.url} is listed twice in the partition map")
            seen[c.url] = c
            if c.spare:
                if c.partition is not None:
                    raise MapError(f"spare {c.url} must not belong to a partition")
                continue
            if c.partition is None or not 0 <= c.partition < self.partitions:
                raise MapError(
                    f"unknown partition number {c.partition} for {c.url} "
                    f"(partitions are 0..{self.partitions - 1})"
                )
        for p in range(self.partitions):
            members = self.copiesOf(p)
            if not members and self.requireComplete:
                raise MapError(f"partition {p} has no copy")
            if len(members) > 2:
                raise MapError(f"partition {p} has {len(members)} copies; at most 2")
            if len({c.copyNo for c in members}) != len(members):
                raise MapError(f"partition {p} has two copies numbered alike")
            if len(members) == 2:
                a, b = members
                if a.server == b.server:
                    raise MapError(
                        f"both copies of partition {p} are on server {a.server} "
                        f"({a.url}, {b.url})"
                    )
                if a.riskGroup == b.riskGroup:
                    raise MapError(
                        f"both copies of partition {p} are in risk group {a.riskGroup!r} "
                        f"({a.url}, {b.url}); declare risk_group.NAME for the servers"
                    )

    def copy(self, url: str) -> CopyState:
        for c in self.copies:
            if c.url == url:
                return c
        raise KeyError(url)

    def copiesOf(self, partition: int) -> list[CopyState]:
        """The copies of C{partition}, by copy number."""
        return sorted(
            (c for c in self.copies if not c.spare and c.partition == partition),
            key=lambda c: c.copyNo,
        )

    def spares(self) -> list[CopyState]:
        return sorted((c for c in self.copies if c.spare), key=lambda c: c.url)

    def partitionOf(self, aor: str) -> int:
        return partitionOf(aor, self.partitions)

    def readCopies(self, partition: int) -> list[CopyState]:
        """Copies to read from, in order of preference (first healthy first)."""
        return [c for c in self.copiesOf(partition) if c.readable]

    def writeCopies(self, partition: int) -> list[CopyState]:
        """Copies every write must go to (C{on} and C{syncing})."""
        return [c for c in self.copiesOf(partition) if c.writable]

    def available(self, partition: int) -> bool:
        return bool(self.readCopies(partition))

    def clone(self) -> "PartitionMap":
        return _copy.deepcopy(self)

    def __iter__(self) -> Iterator[CopyState]:
        return iter(self.copies)

    # -- failover state ----------------------------------------------------

    def recordSuccess(self, url: str) -> None:
        try:
            self.copy(url).errors = 0
        except KeyError:
            pass

    def recordError(
        self, url: str, now: float, threshold: int, fatal: bool = False, reason: str = ""
    ) -> Decision | None:
        """
        Count an error of C{url}; take it out (C{off}) when it reaches
        C{threshold} consecutive errors, or at once if C{fatal} (a failed
        write: the copy has missed data and must be resynchronised).
        """
        try:
            c = self.copy(url)
        except KeyError:
            return None
        c.errors += 1
        if c.status not in (CopyStatus.ON, CopyStatus.SYNCING):
            return None
        if not fatal and c.errors < threshold:
            return None
        c.status = CopyStatus.OFF
        c.failoverTime = now
        c.syncOwner = ""
        return Decision("off", url, c.partition, reason or f"{c.errors} errors", copyNo=c.copyNo)

    def returned(self, url: str, now: float) -> Decision | None:
        """
        C{url} (C{off}) answers again.  A spare simply becomes available; a
        partition copy is resynchronised from a live peer before serving
        reads, or, when no peer is alive, serves again as the best copy left.
        """
        try:
            c = self.copy(url)
        except KeyError:
            return None
        if c.status is not CopyStatus.OFF:
            return None
        c.errors = 0
        if c.spare:
            c.status = CopyStatus.ON
            return Decision("spare-on", url, None, "spare answers again")
        peers = [p for p in self.readCopies(c.partition) if p.url != url]  # type: ignore[arg-type]
        if peers:
            c.status = CopyStatus.SYNCING
            c.syncStarted = now
            return Decision(
                "resync", url, c.partition, "returned; live peer", source=peers[0].url,
                copyNo=c.copyNo,
            )
        c.status = CopyStatus.ON
        return Decision(
            "on", url, c.partition, "returned; no live peer, serving without resync",
            copyNo=c.copyNo,
        )

    def chooseSpare(self, partition: int) -> CopyState | None:
        """
        A spare able to replace a failed copy of C{partition}: available
        (C{on}) and in a risk group and on a server different from every
        other copy of the partition that is not being replaced.
        """
        survivors = [c for c in self.copiesOf(partition) if c.status is not CopyStatus.OFF]
        groups = {c.riskGroup for c in survivors}
        servers = {c.server for c in survivors}
        for s in self.spares():
            if s.status is CopyStatus.ON and s.riskGroup not in groups and s.server not in servers:
                return s
        return None

    def replacements(self, now: float, after: float) -> list[Decision]:
        """
        The spare promotions due at C{now}: each C{off} copy that failed at
        least C{after} seconds ago, whose partition has a live copy to
        resynchronise from, gets a spare (each spare is used once).
        """
        decisions: list[Decision] = []
        used: set[str] = set()
        for p in range(self.partitions):
            live = self.readCopies(p)
            if not live:
                continue
            for c in self.copiesOf(p):
                if c.status is not CopyStatus.OFF or now - c.failoverTime < after:
                    continue
                groups = {x.riskGroup for x in self.copiesOf(p) if x.status is not CopyStatus.OFF}
                servers = {x.server for x in self.copiesOf(p) if x.status is not CopyStatus.OFF}
                for s in self.spares():
                    if (
                        s.url not in used
                        and s.status is CopyStatus.ON
                        and s.riskGroup not in groups
                        and s.server not in servers
                    ):
                        used.add(s.url)
                        decisions.append(
                            Decision(
                                "promote", c.url, p, f"off since {c.failoverTime}",
                                source=live[0].url, spare=s.url, copyNo=c.copyNo,
                            )
                        )
                        break
        return decisions

    def promote(self, failedUrl: str, spareUrl: str, now: float) -> None:
        """
        The spare takes the failed copy's place (C{syncing}); the failed
        database joins the spare pool, C{off} until it answers again.
        """
        failed, spare = self.copy(failedUrl), self.copy(spareUrl)
        spare.partition, spare.copyNo, spare.spare = failed.partition, failed.copyNo, False
        spare.status, spare.syncStarted, spare.errors = CopyStatus.SYNCING, now, 0
        failed.partition, failed.copyNo, failed.spare = None, 0, True
        failed.status = CopyStatus.OFF
        self.validate()

    # -- visibility --------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Every partition's and copy's state as plain data."""
        return {
            "partitions": [
                {
                    "partition": p,
                    "available": self.available(p),
                    "copies": [c.asDict() for c in self.copiesOf(p)],
                }
                for p in range(self.partitions)
            ],
            "spares": [c.asDict() for c in self.spares()],
        }


def buildMap(
    partitions: int,
    assignments: Iterable[tuple[int, Iterable[str]]],
    spares: Iterable[str] = (),
    riskGroups: dict[str, str] | None = None,
) -> PartitionMap:
    """A map from C{(partition, [url, url])} pairs, spare URLs and URL -> risk group."""
    groups = riskGroups or {}
    copies: list[CopyState] = []
    for p, urls in assignments:
        for n, url in enumerate(urls, 1):
            copies.append(CopyState(url, p, n, riskGroup=groups.get(url, "")))
    for url in spares:
        copies.append(CopyState(url, None, 0, spare=True, riskGroup=groups.get(url, "")))
    return PartitionMap(partitions, copies)
