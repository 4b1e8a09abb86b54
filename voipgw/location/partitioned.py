# -*- test-case-name: tests.test_location_partitioned -*-
"""
The partitioned MySQL location store.

AORs are hashed to partitions (L{voipgw.location.partitioning}); each
partition has two copies in databases on different servers and risk groups.
Writes go to both copies in parallel and succeed if one accepted them (the
failing copy is taken out at once: it missed data); reads come from the first
healthy copy.  A health loop probes every database: a copy that answers again
is resynchronised from its live peer before it serves reads; a copy off for
longer than C{spareAfter} is replaced by a spare from another risk group,
also resynchronised first.  The partition map is shared by all nodes through
a map database (L{DatabaseMapSource}) reloaded every C{reloadInterval}, or
given inline (L{StaticMapSource}) for a single node.

See C{docs/location.md}.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from typing import Any, Callable, Iterable, TypeVar

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from voipgw.db.database import Database, redactURL
from voipgw.db.errors import DatabaseUnavailable
from voipgw.interfaces import ILocationStore
from voipgw.location import queries
from voipgw.location.binding import Binding
from voipgw.location.errors import PartitionUnavailable
from voipgw.location.partitioning import CopyState, CopyStatus, Decision, MapError, PartitionMap
from voipgw.location.schema import MAP_MIGRATOR, MIGRATOR

T = TypeVar("T")


def defaultNodeId() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class StaticMapSource:
    """
    A partition map given in the configuration and kept in this process.
    Failover decisions are not shared: meant for a single node (use a map
    database for several).  Expiry leases are always granted.
    """

    shared = False

    def __init__(self, partitionMap: PartitionMap) -> None:
        self._map = partitionMap.clone()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def load(self) -> "defer.Deferred[PartitionMap]":
        return defer.succeed(self._map.clone())

    def setStatus(self, url: str, status: CopyStatus, now: float, errors: int | None = None,
                  expect: Iterable[CopyStatus] | None = None,
                  failover: bool = False) -> "defer.Deferred[bool]":
        c = self._map.copy(url)
        if expect is not None and c.status not in set(expect):
            return defer.succeed(False)
        c.status = status
        if errors is not None:
            c.errors = errors
        if failover:
            c.failoverTime = now
        return defer.succeed(True)

    def claimSync(self, url: str, now: float, staleAfter: float) -> "defer.Deferred[bool]":
        c = self._map.copy(url)
        if c.spare or c.status is not CopyStatus.OFF:
            return defer.succeed(False)
        c.status, c.syncStarted = CopyStatus.SYNCING, now
        return defer.succeed(True)

    def finishSync(self, url: str, now: float) -> "defer.Deferred[bool]":
        c = self._map.copy(url)
        if c.status is not CopyStatus.SYNCING:
            return defer.succeed(False)
        c.status, c.errors = CopyStatus.ON, 0
        return defer.succeed(True)

    def promote(self, failedUrl: str, spareUrl: str, now: float) -> "defer.Deferred[bool]":
        failed, spare = self._map.copy(failedUrl), self._map.copy(spareUrl)
        if failed.status is not CopyStatus.OFF or not spare.spare or spare.status is not CopyStatus.ON:
            return defer.succeed(False)
        self._map.promote(failedUrl, spareUrl, now)
        return defer.succeed(True)

    def acquireLease(self, partition: int, now: float, ttl: float) -> "defer.Deferred[bool]":
        return defer.succeed(True)


class DatabaseMapSource:
    """
    The partition map in a shared map database (tables of the
    C{location_map} schema component), created on first use.
    """

    shared = True
    log = Logger()

    def __init__(self, database: Database, owner: str) -> None:
        self.database = database
        self.owner = owner
        self._ready = False

    def start(self) -> None:
        self.database.start()

    def stop(self) -> None:
        self.database.stop()

    async def _run(self, desc: str, func: Callable[..., T], *args: Any) -> T:
        if not self._ready:
            await self.database.runInteraction("location.map.schema", queries.ensureSchema, MAP_MIGRATOR)
            self._ready = True
        return await self.database.runInteraction(desc, func, *args)

    def load(self) -> "defer.Deferred[PartitionMap]":
        async def load() -> PartitionMap:
            count, copies = await self._run("location.map.load", queries.loadMap)
            if count is None:
                count = 1 + max((c.partition for c in copies if c.partition is not None), default=-1)
            # rows staged for partitions beyond the count (before a rehash) are ignored
            active = [c for c in copies if c.spare or (c.partition is not None and c.partition < count)]
            return PartitionMap(count, active)

        return defer.ensureDeferred(load())

    def setStatus(self, url: str, status: CopyStatus, now: float, errors: int | None = None,
                  expect: Iterable[CopyStatus] | None = None,
                  failover: bool = False) -> "defer.Deferred[bool]":
        return defer.ensureDeferred(self._run(
            "location.map.status", queries.setStatus, url, status, now, self.owner, errors,
            list(expect) if expect is not None else None, failover))

    def claimSync(self, url: str, now: float, staleAfter: float) -> "defer.Deferred[bool]":
        return defer.ensureDeferred(self._run(
            "location.map.claim", queries.claimSync, url, self.owner, now, staleAfter))

    def finishSync(self, url: str, now: float) -> "defer.Deferred[bool]":
        return defer.ensureDeferred(self._run(
            "location.map.synced", queries.finishSync, url, self.owner, now))

    def promote(self, failedUrl: str, spareUrl: str, now: float) -> "defer.Deferred[bool]":
        return defer.ensureDeferred(self._run(
            "location.map.promote", queries.promoteSpare, failedUrl, spareUrl, self.owner, now))

    def acquireLease(self, partition: int, now: float, ttl: float) -> "defer.Deferred[bool]":
        return defer.ensureDeferred(self._run(
            "location.map.lease", queries.acquireLease, partition, self.owner, now, ttl))


@implementer(ILocationStore)
class PartitionedLocationStore:
    """
    L{ILocationStore} over hash-partitioned, duplicated MySQL databases.

    @param source: where the partition map comes from (L{DatabaseMapSource}
        or L{StaticMapSource}).
    @param reactor: runs the database thread pools.
    @param clock: drives the health, reload and expiry loops and the settle
        delay (the reactor, or C{task.Clock} in tests).
    @param nodeId: this node's name in the shared map (claims, leases).
    @param errorThreshold: consecutive read or probe errors after which a
        copy is taken out (a failed write takes it out at once).
    @param healthInterval: seconds between probes of every database.
    @param reloadInterval: seconds between reloads of a shared map.
    @param spareAfter: seconds a copy stays C{off} before a spare replaces it.
    @param expireInterval: seconds between expiry runs (0: never run them).
    @param settleDelay: seconds a resync waits after marking the target
        C{syncing}, so every node writes to it before the copy starts;
        defaults to C{reloadInterval} plus one second with a shared map, 0
        otherwise.
    @param databaseFactory: C{callable(url) -> Database}; by default a
        L{Database} with C{connectTimeout} and one retry.
    """

    log = Logger()

    #: Rows per resync chunk (one read on the source, one write on the target).
    resyncChunk = 2000

    def __init__(
        self,
        source: Any,
        reactor: Any,
        clock: Any = None,
        nodeId: str = "",
        errorThreshold: int = 3,
        healthInterval: float = 5.0,
        reloadInterval: float = 10.0,
        spareAfter: float = 30.0,
        expireInterval: float = 60.0,
        settleDelay: float | None = None,
        connectTimeout: float = 2.0,
        databaseFactory: Callable[[str], Database] | None = None,
    ) -> None:
        self.source = source
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self.nodeId = nodeId or defaultNodeId()
        self.errorThreshold = errorThreshold
        self.healthInterval = healthInterval
        self.reloadInterval = reloadInterval
        self.spareAfter = spareAfter
        self.expireInterval = expireInterval
        if settleDelay is None:
            settleDelay = reloadInterval + 1.0 if getattr(source, "shared", False) else 0.0
        self.settleDelay = settleDelay
        self._connectTimeout = connectTimeout
        self._databaseFactory = databaseFactory or self._makeDatabase
        self._databases: dict[str, Database] = {}
        self._schemaReady: set[str] = set()
        self._schemaLocks: dict[str, defer.DeferredLock] = {}
        self._mapLock = defer.DeferredLock()
        self._syncing: dict[str, defer.Deferred[None]] = {}
        self._loops: list[task.LoopingCall] = []
        self._map: PartitionMap | None = None
        self.counters: Counter[str] = Counter()

    # -- plumbing ------------------------------------------------------------------

    def _makeDatabase(self, url: str) -> Database:
        return Database(url, self._reactor, self._clock, name=redactURL(url), retries=1,
                        backoff=0.05, connectTimeout=self._connectTimeout)

    @property
    def map(self) -> PartitionMap:
        if self._map is None:
            raise RuntimeError("the partitioned location store is not started")
        return self._map

    def database(self, url: str) -> Database:
        db = self._databases.get(url)
        if db is None:
            db = self._databases[url] = self._databaseFactory(url)
        return db

    async def _ensureSchema(self, url: str) -> None:
        if url in self._schemaReady:
            return
        lock = self._schemaLocks.setdefault(url, defer.DeferredLock())
        await lock.acquire()
        try:
            if url not in self._schemaReady:
                await self.database(url).runInteraction(
                    "location.schema", queries.ensureSchema, MIGRATOR)
                self._schemaReady.add(url)
        finally:
            lock.release()

    async def _run(self, url: str, desc: str, func: Callable[..., T], *args: Any) -> T:
        await self._ensureSchema(url)
        return await self.database(url).runInteraction(desc, func, *args)

    def _now(self) -> float:
        return float(self._clock.seconds())

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> "defer.Deferred[None]":
        """Load the map (failing if it cannot), then start the loops."""
        return defer.ensureDeferred(self._start())

    async def _start(self) -> None:
        self.source.start()
        self._map = await self.source.load()
        self.log.info("location: {partitions} partitions, node {node}",
                      partitions=self._map.partitions, node=self.nodeId)
        for interval, func in (
            (self.healthInterval, self.checkHealth),
            (self.reloadInterval if getattr(self.source, "shared", False) else 0, self.reload),
            (self.expireInterval, self._expireLoop),
        ):
            if interval and interval > 0:
                loop = task.LoopingCall(self._guarded, func)
                loop.clock = self._clock
                loop.start(interval, now=False).addErrback(
                    lambda f: self.log.failure("location loop died", f))
                self._loops.append(loop)

    def stop(self) -> "defer.Deferred[None]":
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        if self._syncing:
            await defer.DeferredList(list(self._syncing.values()), consumeErrors=True)
        for db in self._databases.values():
            db.stop()
        self._databases.clear()
        self._schemaReady.clear()
        self.source.stop()

    def _guarded(self, func: Callable[[], "defer.Deferred[Any]"]) -> "defer.Deferred[None]":
        d = defer.maybeDeferred(func)
        d.addErrback(lambda f: self.log.failure("location background task failed", f))
        return d.addCallback(lambda _: None)

    # -- ILocationStore ------------------------------------------------------------

    def lookup(self, aor: str, now: float) -> "defer.Deferred[list[Binding]]":
        return defer.ensureDeferred(self._read(aor, "location.lookup", queries.lookupBindings, aor, now))

    def save(self, binding: Binding) -> "defer.Deferred[None]":
        async def save() -> None:
            await self._write(self.map.partitionOf(binding.aor), "location.save",
                              queries.saveBinding, queries.bindingToRow(binding))

        return defer.ensureDeferred(save())

    def remove(self, aor: str, key: str) -> "defer.Deferred[bool]":
        async def remove() -> bool:
            return bool(await self._write(self.map.partitionOf(aor), "location.remove",
                                          queries.removeBinding, aor, key))

        return defer.ensureDeferred(remove())

    def removeAll(self, aor: str) -> "defer.Deferred[int]":
        async def removeAll() -> int:
            return int(await self._write(self.map.partitionOf(aor), "location.removeAll",
                                         queries.removeAor, aor))

        return defer.ensureDeferred(removeAll())

    def expire(self, now: float) -> "defer.Deferred[int]":
        """
        Delete expired rows of the partitions whose expiry lease this node
        holds (takes it if free); other partitions are left to their owner.
        """

        async def expire() -> int:
            total = 0
            for p in range(self.map.partitions):
                try:
                    if not await self.source.acquireLease(p, now, max(3 * self.expireInterval, 60.0)):
                        continue
                    total += int(await self._write(p, "location.expire", queries.removeExpired, now))
                except (PartitionUnavailable, DatabaseUnavailable) as e:
                    self.log.warn("location expiry skipped partition {partition}: {error}",
                                  partition=p, error=str(e))
            self.counters["expired"] += total
            return total

        return defer.ensureDeferred(expire())

    def count(self) -> "defer.Deferred[int]":
        async def count() -> int:
            now = self._now()
            total = 0
            for p in range(self.map.partitions):
                total += await self._readPartition(p, "location.count", queries.countLive, now)
            return total

        return defer.ensureDeferred(count())

    def _expireLoop(self) -> "defer.Deferred[int]":
        return self.expire(self._now())

    # -- reads and writes -------------------------------------------------------------

    async def _read(self, aor: str, desc: str, func: Callable[..., T], *args: Any) -> T:
        return await self._readPartition(self.map.partitionOf(aor), desc, func, *args)

    async def _readPartition(self, p: int, desc: str, func: Callable[..., T], *args: Any) -> T:
        for c in self.map.readCopies(p):
            try:
                result = await self._run(c.url, desc, func, *args)
            except DatabaseUnavailable as e:
                await self._failed(c.url, fatal=False, reason=f"{desc}: {e}")
                continue
            self.map.recordSuccess(c.url)
            return result
        self.counters["partitionUnavailable"] += 1
        raise PartitionUnavailable(p)

    async def _write(self, p: int, desc: str, func: Callable[..., T], *args: Any) -> T:
        """
        Run C{func} on every writable copy of C{p} in parallel.  Succeeds if
        one copy accepted it; returns the result of the first C{on} copy
        that did (a C{syncing} copy's answer may be partial).
        """
        targets = self.map.writeCopies(p)
        if not targets:
            self.counters["partitionUnavailable"] += 1
            raise PartitionUnavailable(p)
        results: list[tuple[bool, Any]] = await defer.DeferredList(
            [defer.ensureDeferred(self._run(c.url, desc, func, *args)) for c in targets],
            consumeErrors=True,
        )
        accepted: list[tuple[CopyState, Any]] = []
        unexpected = None
        for c, (ok, value) in zip(targets, results):
            if ok:
                accepted.append((c, value))
                self.map.recordSuccess(c.url)
            elif value.check(DatabaseUnavailable):
                await self._failed(c.url, fatal=True, reason=f"{desc} failed: {value.value}")
            elif unexpected is None:
                unexpected = value
        if unexpected is not None:
            unexpected.raiseException()
        if not accepted:
            self.counters["partitionUnavailable"] += 1
            raise PartitionUnavailable(p, "every copy failed")
        for c, value in accepted:
            if c.status is CopyStatus.ON:
                return value  # type: ignore[no-any-return]
        return accepted[0][1]  # type: ignore[no-any-return]

    # -- failover ---------------------------------------------------------------------

    async def _failed(self, url: str, fatal: bool, reason: str) -> None:
        """Count an error of C{url}; take it out of service if due, in the shared map too."""
        self.counters["copyErrors"] += 1
        decision = self.map.recordError(url, self._now(), self.errorThreshold, fatal, reason)
        if decision is None:
            return
        self.counters["failovers"] += 1
        c = self.map.copy(url)
        self._logDecision(decision)
        await self._persist(url, CopyStatus.OFF, errors=c.errors, failover=True)

    async def _persist(self, url: str, status: CopyStatus, errors: int | None = None,
                       expect: Iterable[CopyStatus] | None = None, failover: bool = False) -> bool:
        try:
            await self._mapLock.acquire()
            try:
                return bool(await self.source.setStatus(url, status, self._now(), errors, expect, failover))
            finally:
                self._mapLock.release()
        except DatabaseUnavailable as e:
            self.log.warn("location: cannot record {url} {status} in the map: {error}",
                          url=redactURL(url), status=status.value, error=str(e))
            return False

    def _logDecision(self, d: Decision, **extra: Any) -> None:
        self.log.warn(
            "location failover: {action} {url} (partition {partition}): {reason}",
            action=d.action, url=redactURL(d.url), partition=d.partition, reason=d.reason,
            source=redactURL(d.source) if d.source else None,
            spare=redactURL(d.spare) if d.spare else None, node=self.nodeId, **extra,
        )

    def reload(self) -> "defer.Deferred[None]":
        """Reload the partition map from its source now."""
        return defer.ensureDeferred(self._reload())

    async def _reload(self) -> None:
        await self._mapLock.acquire()
        try:
            try:
                fresh = await self.source.load()
            except (DatabaseUnavailable, MapError) as e:
                self.counters["mapReloadFailures"] += 1
                self.log.warn("location: map reload failed, keeping the current map: {error}",
                              error=str(e))
                return
        finally:
            self._mapLock.release()
        old = self._map
        if old is not None:
            previous = {c.url: c for c in old.copies}
            for c in fresh.copies:
                before = previous.get(c.url)
                if before is None:
                    continue
                c.errors = max(c.errors, before.errors) if c.status is before.status else c.errors
                if (before.status, before.partition, before.spare) != (c.status, c.partition, c.spare):
                    self.counters["mapChanges"] += 1
                    self.log.info(
                        "location map: {url} {old} -> {new} (partition {partition})",
                        url=redactURL(c.url), old=before.status.value, new=c.status.value,
                        partition=c.partition, node=self.nodeId,
                    )
            if old.partitions != fresh.partitions:
                self.log.warn("location map: partitions {old} -> {new}",
                              old=old.partitions, new=fresh.partitions)
        self.counters["mapReloads"] += 1
        self._map = fresh

    def checkHealth(self) -> "defer.Deferred[None]":
        """Probe every database once; act on returns, failures and due promotions."""
        return defer.ensureDeferred(self._checkHealth())

    async def _checkHealth(self) -> None:
        candidates = [c for c in self.map.copies
                      if c.status is not CopyStatus.MAINTENANCE and c.url not in self._syncing]
        results: list[tuple[bool, Any]] = await defer.DeferredList(
            [defer.ensureDeferred(self._run(c.url, "location.ping", queries.ping)) for c in candidates],
            consumeErrors=True,
        )
        for c, (ok, value) in zip(candidates, results):
            try:
                current = self.map.copy(c.url)
            except KeyError:
                continue
            if ok:
                self.map.recordSuccess(c.url)
                if current.status is CopyStatus.OFF:
                    await self._returned(c.url)
            elif value.check(DatabaseUnavailable):
                await self._failed(c.url, fatal=False, reason=f"probe failed: {value.value}")
            else:
                self.log.failure("location probe of {url} failed", value, url=redactURL(c.url))
        for d in self.map.replacements(self._now(), self.spareAfter):
            await self._promote(d)

    async def _returned(self, url: str) -> None:
        now = self._now()
        decision = self.map.clone().returned(url, now)
        if decision is None:
            return
        if decision.action == "resync":
            if not await self.source.claimSync(url, now, staleAfter=max(600.0, 10 * self.settleDelay)):
                return  # another node is on it; we follow at the next reload
        elif not await self._persist(url, CopyStatus.ON, errors=0, expect=[CopyStatus.OFF]):
            return
        self.map.returned(url, now)
        self.counters["returns"] += 1
        self._logDecision(decision)
        if decision.action == "resync" and decision.source is not None:
            self._startResync(url, decision.source, decision.partition)

    async def _promote(self, d: Decision) -> None:
        assert d.spare is not None and d.source is not None
        if not await self.source.promote(d.url, d.spare, self._now()):
            return
        self.map.promote(d.url, d.spare, self._now())
        self.counters["promotions"] += 1
        self._logDecision(d)
        self._startResync(d.spare, d.source, d.partition)

    def _startResync(self, target: str, source: str, partition: int | None) -> None:
        d = defer.ensureDeferred(self._resync(target, source, partition))
        self._syncing[target] = d
        d.addBoth(lambda r: (self._syncing.pop(target, None), r)[1])
        d.addErrback(lambda f: self.log.failure("location resync of {url} failed", f,
                                                url=redactURL(target)))

    def resync(self, target: str, source: str) -> "defer.Deferred[None]":
        """
        Resynchronise C{target} (marked C{syncing}) from C{source}: empty it,
        wait C{settleDelay} so every node writes to it, copy every row (newer
        rows written meanwhile win), delete rows removed meanwhile, then mark
        it C{on}.
        """
        return defer.ensureDeferred(self._resync(target, source, None))

    async def _resync(self, target: str, source: str, partition: int | None) -> None:
        started = self._now()
        self.log.info("location resync of {target} from {source} starting",
                      target=redactURL(target), source=redactURL(source), partition=partition)
        side = target
        try:
            await self._run(target, "location.resync.clear", queries.clearBindings)
            if self.settleDelay > 0:
                await task.deferLater(self._clock, self.settleDelay, lambda: None)
            copied, after = 0, None
            while True:
                side = source
                chunk = await self._run(source, "location.resync.read", queries.readChunk,
                                        after, self.resyncChunk)
                if not chunk:
                    break
                side = target
                await self._run(target, "location.resync.merge", queries.mergeRows, chunk)
                copied += len(chunk)
                after = (chunk[-1]["aor"], chunk[-1]["binding_key"])
            targetKeys = await self._run(target, "location.resync.keys", queries.readKeys)
            side = source
            sourceKeys = await self._run(source, "location.resync.keys", queries.readKeys)
            gone = targetKeys - sourceKeys
            if gone:
                # re-read: a write in flight may have reached the target first
                gone -= await self._run(source, "location.resync.keys", queries.readKeys)
            side = target
            await self._run(target, "location.resync.prune", queries.deleteKeys, sorted(gone))
        except DatabaseUnavailable as e:
            self.counters["resyncFailures"] += 1
            self.log.warn("location resync of {target} from {source} failed on {side}: {error}",
                          target=redactURL(target), source=redactURL(source),
                          side=redactURL(side), error=str(e))
            if side == target:
                await self._failed(target, fatal=True, reason=f"resync failed: {e}")
            else:
                await self._failed(source, fatal=False, reason=f"resync read failed: {e}")
                self.map.recordError(target, self._now(), 1, fatal=True, reason="resync aborted")
                await self._persist(target, CopyStatus.OFF, expect=[CopyStatus.SYNCING])
            return
        if await self.source.finishSync(target, self._now()):
            try:
                c = self.map.copy(target)
                c.status, c.errors = CopyStatus.ON, 0
            except KeyError:
                pass
            self.counters["resyncs"] += 1
            self.log.info(
                "location resync of {target} from {source} done: {rows} rows in {seconds:.2f}s",
                target=redactURL(target), source=redactURL(source), rows=copied,
                seconds=self._now() - started, partition=partition,
            )

    # -- visibility ---------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """Partitions, copies, counters and running resyncs as plain data."""
        snap = self.map.snapshot() if self._map is not None else {"partitions": [], "spares": []}
        return {
            "node": self.nodeId,
            "partitions": self._map.partitions if self._map is not None else 0,
            "map": snap,
            "syncing": sorted(redactURL(u) for u in self._syncing),
            "counters": dict(self.counters),
        }
