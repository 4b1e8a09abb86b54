"""
Tests for L{voipgw.subscribers.cache.LookupCache} on a L{task.Clock}, and
for the store's use of it (query counts against a real SQLite database).
"""

from __future__ import annotations

import os

from sqlalchemy import create_engine
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from voipgw.db.database import Database
from voipgw.subscribers import SQLSubscriberStore
from voipgw.subscribers.cache import LookupCache
from voipgw.subscribers.schema import MIGRATOR


class Fetcher:
    """Counts fetches; each returns a Deferred the test fires."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.pending: list[defer.Deferred] = []

    def __call__(self, key: str) -> defer.Deferred:
        self.calls.append(key)
        d: defer.Deferred = defer.Deferred()
        self.pending.append(d)
        return d


class LookupCacheTests(TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.cache: LookupCache[str, str] = LookupCache(self.clock, ttl=10, negativeTTL=2, maxSize=3)
        self.fetch = Fetcher()

    def get(self, key: str) -> defer.Deferred:
        return self.cache.get(key, self.fetch)

    def test_ttl(self) -> None:
        d = self.get("a")
        self.fetch.pending[0].callback("A")
        self.assertEqual(self.successResultOf(d), "A")
        self.clock.advance(9.9)
        self.assertEqual(self.successResultOf(self.get("a")), "A")
        self.assertEqual(self.fetch.calls, ["a"])
        self.clock.advance(0.1)
        d = self.get("a")
        self.assertNoResult(d)
        self.assertEqual(self.fetch.calls, ["a", "a"])

    def test_negativeTTL(self) -> None:
        d = self.get("nobody")
        self.fetch.pending[0].callback(None)
        self.assertIsNone(self.successResultOf(d))
        self.clock.advance(1.9)
        self.assertIsNone(self.successResultOf(self.get("nobody")))
        self.clock.advance(0.1)
        self.assertNoResult(self.get("nobody"))
        self.assertEqual(self.fetch.calls, ["nobody", "nobody"])

    def test_sizeBoundLRU(self) -> None:
        for key in "abc":
            self.get(key)
        for d, key in zip(self.fetch.pending, "abc"):
            d.callback(key.upper())
        self.get("a")  # a is now the most recently used
        self.get("d")
        self.fetch.pending[-1].callback("D")
        self.assertEqual(len(self.cache), 3)
        self.assertNotIn("b", self.cache)
        for key in "acd":
            self.assertIn(key, self.cache)
        calls = len(self.fetch.calls)
        self.get("b")
        self.assertEqual(len(self.fetch.calls), calls + 1)

    def test_coalescing(self) -> None:
        waiters = [self.get("a") for _ in range(100)]
        self.assertEqual(self.fetch.calls, ["a"])
        self.assertEqual(self.cache.coalesced, 99)
        for d in waiters:
            self.assertNoResult(d)
        self.fetch.pending[0].callback("A")
        self.assertEqual([self.successResultOf(d) for d in waiters], ["A"] * 100)

    def test_failureSharedNotCached(self) -> None:
        first, second = self.get("a"), self.get("a")
        self.fetch.pending[0].errback(RuntimeError("db down"))
        self.failureResultOf(first, RuntimeError)
        self.failureResultOf(second, RuntimeError)
        self.get("a")
        self.assertEqual(self.fetch.calls, ["a", "a"])

    def test_synchronousFetchError(self) -> None:
        def broken(key: str) -> defer.Deferred:
            raise ValueError(key)

        self.failureResultOf(self.cache.get("a", broken), ValueError)
        self.assertNotIn("a", self.cache)

    def test_invalidate(self) -> None:
        d = self.get("a")
        self.fetch.pending[0].callback("A")
        self.successResultOf(d)
        self.cache.invalidate("a")
        self.get("a")
        self.assertEqual(self.fetch.calls, ["a", "a"])

    def test_invalidateDuringFetch(self) -> None:
        """A fetch in flight when the key is invalidated is delivered, not cached."""
        stale = self.get("a")
        self.cache.invalidate("a")
        fresh = self.get("a")
        self.assertEqual(self.fetch.calls, ["a", "a"])
        self.fetch.pending[0].callback("old")
        self.assertEqual(self.successResultOf(stale), "old")
        self.assertNotIn("a", self.cache)
        self.fetch.pending[1].callback("new")
        self.assertEqual(self.successResultOf(fresh), "new")
        self.assertEqual(self.successResultOf(self.get("a")), "new")

    def test_zeroTTL(self) -> None:
        cache: LookupCache[str, str] = LookupCache(self.clock, ttl=0, negativeTTL=0, maxSize=10)
        cache.get("a", self.fetch)
        self.fetch.pending[0].callback("A")
        cache.get("a", self.fetch)
        self.assertEqual(self.fetch.calls, ["a", "a"])

    def test_invalidArguments(self) -> None:
        self.assertRaises(ValueError, LookupCache, self.clock, -1, 0, 10)
        self.assertRaises(ValueError, LookupCache, self.clock, 1, 0, 0)


class StoreCacheTests(TestCase):
    """The store shares one query among concurrent lookups of a subscriber."""

    def setUp(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        url = f"sqlite:///{directory}/s.sqlite"
        engine = create_engine(url)
        with engine.begin() as conn:
            MIGRATOR.initialise(conn)
        engine.dispose()
        self.clock = task.Clock()
        self.db = Database(url, reactor)
        self.addCleanup(self.db.stop)
        self.store = SQLSubscriberStore(self.db, [], self.clock, cacheTTL=5, negativeTTL=1, cacheSize=10)

    async def test_burstIsOneQuery(self) -> None:
        await self.store.addSubscriber("alice", "example.com", "pw")
        before = self.db.queries
        results = await defer.gatherResults(
            [self.store.getSubscriber("Alice" if i % 2 else "alice", "example.com") for i in range(200)]
        )
        self.assertEqual(self.db.queries - before, 1)
        self.assertEqual({r.aor for r in results}, {"alice@example.com"})
        # Unknown subscribers too.
        before = self.db.queries
        results = await defer.gatherResults([self.store.getSubscriber("bob", "example.com") for i in range(50)])
        self.assertEqual(results, [None] * 50)
        self.assertEqual(self.db.queries - before, 1)
        # Expiry on the clock.
        self.clock.advance(5)
        before = self.db.queries
        await self.store.getSubscriber("alice", "example.com")
        await self.store.getSubscriber("bob", "example.com")
        self.assertEqual(self.db.queries - before, 2)

    async def test_writeDuringLookup(self) -> None:
        """A lookup racing a password change does not cache the old record."""
        await self.store.addSubscriber("alice", "example.com", "old")
        lookup = self.store.getSubscriber("alice", "example.com")
        write = self.store.setPassword("alice", "example.com", "new")
        await lookup
        await write
        alice = await self.store.getSubscriber("alice", "example.com")
        from voipgw.subscribers import computeHA1

        self.assertEqual(alice.ha1, computeHA1("alice", "example.com", "new"))
