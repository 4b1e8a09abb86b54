# -*- test-case-name: tests.test_subscribers -*-
"""
L{SQLSubscriberStore}: subscribers in SQL, written to a master, read from
healthy replicas, looked up through a coalescing cache.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

from sqlalchemy.exc import DBAPIError
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from voipgw.db.database import Database
from voipgw.db.errors import DatabaseUnavailable, describeError
from voipgw.interfaces import ISubscriberStore
from voipgw.subscribers import queries
from voipgw.subscribers.cache import LookupCache
from voipgw.subscribers.model import Subscriber
from voipgw.subscribers.replicas import ReplicaProber, ReplicaSet

T = TypeVar("T")

Key = tuple[str, str]


@implementer(ISubscriberStore)
class SQLSubscriberStore:
    """
    Subscribers in one master database and its replicas.

    @param master: the L{Database} all writes go to.
    @param replicas: L{Database}s replicating the master; reads go to a
        healthy one, round-robin, else to the master.
    @param clock: for cache expiry, replica probing and timestamps.
    @param cacheTTL: seconds a found subscriber is cached (0: no caching).
    @param negativeTTL: seconds an absent subscriber is cached.
    @param cacheSize: at most this many cached lookups (LRU).
    @param maxReplicaLag: a replica lagging more seconds is taken out.
    @param probeInterval: seconds between checks of every replica.

    A replica whose read fails is taken out at once and retried by the
    probe; the read is retried on another replica, then on the master.
    After a write, reads of that subscriber go to the master for
    C{maxReplicaLag} seconds so that a lagging replica cannot bring back
    (and cache) the old record.

    Call L{startProbing}/L{stopProbing} (L{SubscriberService} does).
    """

    log = Logger()

    def __init__(
        self,
        master: Database,
        replicas: Sequence[Database],
        clock: Any,
        cacheTTL: float = 10.0,
        negativeTTL: float = 2.0,
        cacheSize: int = 100_000,
        maxReplicaLag: float = 5.0,
        probeInterval: float = 5.0,
    ) -> None:
        self.master = master
        self.replicas: ReplicaSet[Database] = ReplicaSet(replicas, name=lambda db: db.name)
        self._clock = clock
        self.cache: LookupCache[Key, Subscriber] = LookupCache(clock, cacheTTL, negativeTTL, cacheSize)
        self.maxReplicaLag = maxReplicaLag
        self.prober: ReplicaProber[Database] = ReplicaProber(
            self.replicas, self._probe, clock, probeInterval, maxReplicaLag, self._probeMaster
        )
        self._recentWrites: dict[Key, float] = {}
        # cache misses waiting for a database read (batched, see _fetch)
        self._queued: dict[Key, defer.Deferred[Subscriber | None]] = {}
        self._readsInFlight = 0
        #: Database reads of subscribers in flight at most; further misses
        #: wait and are read together, in one C{IN (...)} query, when one
        #: of them completes.
        self.maxConcurrentReads = 2
        #: Most keys in one batched read.
        self.maxBatch = queries.MAX_BATCH
        self.batches = 0

    # -- replica health ------------------------------------------------------

    def startProbing(self) -> None:
        self.prober.start()

    def stopProbing(self) -> "defer.Deferred[None]":
        return self.prober.stop()

    def _probe(self, db: Database) -> "defer.Deferred[queries.ReplicationStatus]":
        return db.runInteraction("replication status", queries.replicationStatus)

    def _probeMaster(self) -> "defer.Deferred[None]":
        return self.master.runInteraction("ping", queries.ping)

    # -- reads ---------------------------------------------------------------

    async def _read(self, desc: str, func: Callable[..., T], *args: Any, preferMaster: bool = False) -> T:
        if preferMaster:
            try:
                return await self.master.runInteraction(desc, func, *args)
            except DatabaseUnavailable:
                if not self.replicas.healthy():
                    raise
        tried: list[Database] = []
        while True:
            replica = self.replicas.choose(exclude=tried)
            if replica is None:
                break
            tried.append(replica)
            try:
                return await replica.runInteraction(desc, func, *args)
            except (DatabaseUnavailable, DBAPIError) as e:
                # Unreachable, or broken (e.g. a table missing because
                # replication stopped): out until the probe finds it well.
                self.log.warn(
                    "{desc} failed on replica {replica}, trying elsewhere: {error}",
                    desc=desc,
                    replica=replica.name,
                    error=describeError(e),
                )
                self.replicas.markDown(replica, f"{desc} failed: {describeError(e)}")
        return await self.master.runInteraction(desc, func, *args)

    def getSubscriber(self, username: str, domain: str) -> "defer.Deferred[Subscriber | None]":
        try:
            key = queries.normaliseKey(username, domain)
        except queries.InvalidSubscriber:
            return defer.succeed(None)
        return self.cache.get(key, self._fetch)

    def _fetch(self, key: Key) -> "defer.Deferred[Subscriber | None]":
        # The cache coalesces lookups of one key; here misses of different
        # keys are batched: with maxConcurrentReads reads in flight, a miss
        # waits, and the next read takes every waiting key (one query and
        # one thread hop for a burst instead of one each).
        d: defer.Deferred[Subscriber | None] = defer.Deferred()
        if self._readsInFlight < self.maxConcurrentReads and not self._queued:
            self._startRead({key: d})
        else:
            self._queued[key] = d
        return d

    def _startRead(self, batch: dict[Key, "defer.Deferred[Subscriber | None]"]) -> None:
        self._readsInFlight += 1
        self.batches += 1
        keys = list(batch)
        preferMaster = any([self._recentlyWritten(k) for k in keys])
        d: defer.Deferred[dict[Key, Subscriber]] = defer.ensureDeferred(
            self._read("get subscribers", queries.getSubscribers, keys, preferMaster=preferMaster)
        )
        d.addBoth(self._readDone, batch)

    def _readDone(self, result: "dict[Key, Subscriber] | Failure",
                  batch: dict[Key, "defer.Deferred[Subscriber | None]"]) -> None:  # noqa: E501
        self._readsInFlight -= 1
        while self._queued and self._readsInFlight < self.maxConcurrentReads:
            queued = self._queued
            if len(queued) <= self.maxBatch:
                self._queued = {}
                self._startRead(queued)
            else:
                keys = list(queued)[: self.maxBatch]
                self._startRead({k: queued.pop(k) for k in keys})
        for key, waiter in batch.items():
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result.get(key))

    async def preload(self, limit: int | None = None, page: int = 2000) -> int:
        """
        Fill the cache with up to C{limit} (default: the cache size)
        subscribers, read in pages of C{page}; returns how many.  Entries
        expire after C{cacheTTL} like fetched ones (so this is useful with a
        long C{cache_ttl}); a key being fetched or written meanwhile is not
        overwritten.
        """
        limit = self.cache.maxSize if limit is None else min(limit, self.cache.maxSize)
        loaded = 0
        after: Key = ("", "")
        while loaded < limit:
            rows = await self._read("preload subscribers", queries.subscribersAfter, after, min(page, limit - loaded))
            if not rows:
                break
            for subscriber in rows:
                key = (subscriber.username, subscriber.domain)
                if not self._recentlyWritten(key):
                    self.cache.put(key, subscriber)
            loaded += len(rows)
            after = (rows[-1].username, rows[-1].domain)
        return loaded

    def _recentlyWritten(self, key: Key) -> bool:
        until = self._recentWrites.get(key)
        if until is None:
            return False
        if until > self._clock.seconds():
            return True
        del self._recentWrites[key]
        return False

    def listSubscribers(
        self, domain: str | None = None, limit: int = 1000, offset: int = 0
    ) -> "defer.Deferred[list[Subscriber]]":
        try:
            normalised = queries.normaliseDomain(domain) if domain is not None else None
        except queries.InvalidSubscriber as e:
            return defer.fail(e)
        return defer.ensureDeferred(
            self._read("list subscribers", queries.listSubscribers, normalised, limit, offset)
        )

    # -- writes --------------------------------------------------------------

    async def _write(self, key: Key, desc: str, func: Callable[..., T], *args: Any) -> T:
        self.cache.invalidate(key)
        try:
            return await self.master.runInteraction(desc, func, *args)
        finally:
            # Whether or not the write committed, the replicas may be behind
            # for a while; invalidate again in case a read raced the write.
            self.cache.invalidate(key)
            self._noteWrite(key)

    def _noteWrite(self, key: Key) -> None:
        now = self._clock.seconds()
        if len(self._recentWrites) > 10_000:
            self._recentWrites = {k: t for k, t in self._recentWrites.items() if t > now}
        if self.replicas.members and self.maxReplicaLag > 0:
            self._recentWrites[key] = now + self.maxReplicaLag + 1

    def addSubscriber(
        self, username: str, domain: str, password: str, **settings: Any
    ) -> "defer.Deferred[Subscriber]":
        try:
            key = queries.normaliseKey(username, domain)
            queries.validatePassword(password)
            values = queries.validateSettings(settings)
        except queries.InvalidSubscriber as e:
            return defer.fail(e)
        return defer.ensureDeferred(
            self._write(key, "add subscriber", queries.addSubscriber, *key, password, self._clock.seconds(), values)
        )

    def removeSubscriber(self, username: str, domain: str) -> "defer.Deferred[None]":
        try:
            key = queries.normaliseKey(username, domain)
        except queries.InvalidSubscriber as e:
            return defer.fail(e)
        return defer.ensureDeferred(self._write(key, "remove subscriber", queries.removeSubscriber, *key))

    def setPassword(self, username: str, domain: str, password: str) -> "defer.Deferred[None]":
        try:
            key = queries.normaliseKey(username, domain)
            queries.validatePassword(password)
        except queries.InvalidSubscriber as e:
            return defer.fail(e)
        return defer.ensureDeferred(
            self._write(key, "set password", queries.setPassword, *key, password, self._clock.seconds())
        )
