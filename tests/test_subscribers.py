"""
Tests for L{voipgw.subscribers.store.SQLSubscriberStore}: one mixin run
against SQLite (a temporary file) and against the machine's MariaDB.
"""

from __future__ import annotations

import hashlib
import os

from sqlalchemy import create_engine, inspect
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface.verify import verifyObject

from tests import mariadb
from voipgw.db.database import Database
from voipgw.interfaces import ISubscriberStore
from voipgw.subscribers import (
    InvalidSubscriber,
    SQLSubscriberStore,
    Subscriber,
    SubscriberExists,
    UnknownSubscriber,
    computeHA1,
)
from voipgw.subscribers.schema import MIGRATOR

EVIL = "o'brien\"; DROP TABLE subscriber--"


class SubscriberStoreTestsMixin:
    """C{self.url} names an empty database; C{setUp} creates the schema."""

    url: str

    def makeURL(self) -> str:
        raise NotImplementedError

    def setUp(self) -> None:
        self.url = self.makeURL()
        engine = create_engine(self.url)
        with engine.begin() as conn:
            MIGRATOR.initialise(conn)
        engine.dispose()
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.db = Database(self.url, reactor)
        self.addCleanup(self.db.stop)
        self.store = SQLSubscriberStore(self.db, [], self.clock, cacheTTL=30, negativeTTL=5, cacheSize=100)

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(ISubscriberStore, self.store))

    async def test_addAndGet(self) -> None:
        added = await self.store.addSubscriber("alice", "example.com", "secret")
        expected = Subscriber(
            username="alice",
            domain="example.com",
            ha1=hashlib.md5(b"alice:example.com:secret").hexdigest(),
            ha1Sha256=hashlib.sha256(b"alice:example.com:secret").hexdigest(),
        )
        self.assertEqual(added, expected)
        self.store.cache.clear()
        found = await self.store.getSubscriber("alice", "example.com")
        self.assertEqual(found, expected)
        # A known vector: RFC 2617's example user/realm/password.
        self.assertEqual(
            computeHA1("Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9",
        )

    async def test_settings(self) -> None:
        await self.store.addSubscriber(
            "bob", "example.com", "pw", enabled=False, callerId="+4930123", maxContacts=3
        )
        self.store.cache.clear()
        bob = await self.store.getSubscriber("bob", "example.com")
        assert bob is not None
        self.assertEqual((bob.enabled, bob.callerId, bob.maxContacts), (False, "+4930123", 3))

    async def test_invalidSettings(self) -> None:
        for settings in ({"maxContacts": -1}, {"maxContacts": "3"}, {"enabled": "yes"}, {"colour": "red"}):
            with self.assertRaises(InvalidSubscriber):
                await self.store.addSubscriber("bob", "example.com", "pw", **settings)
        for username, domain, password in (("", "example.com", "pw"), ("bob", "", "pw"),
                                           ("bob", "example.com", ""), ("bob", "ex ample.com", "pw"),
                                           ("b\x00b", "example.com", "pw"), ("x" * 65, "example.com", "pw")):
            with self.assertRaises(InvalidSubscriber):
                await self.store.addSubscriber(username, domain, password)
        self.assertEqual(await self.store.listSubscribers(), [])

    async def test_duplicate(self) -> None:
        await self.store.addSubscriber("alice", "example.com", "secret")
        with self.assertRaises(SubscriberExists) as caught:
            await self.store.addSubscriber("ALICE", "Example.com", "other")
        self.assertIn("alice@example.com", str(caught.exception))
        self.store.cache.clear()
        alice = await self.store.getSubscriber("alice", "example.com")
        assert alice is not None
        self.assertEqual(alice.ha1, computeHA1("alice", "example.com", "secret"))

    async def test_unknown(self) -> None:
        self.assertIsNone(await self.store.getSubscriber("nobody", "example.com"))
        with self.assertRaises(UnknownSubscriber):
            await self.store.removeSubscriber("nobody", "example.com")
        with self.assertRaises(UnknownSubscriber):
            await self.store.setPassword("nobody", "example.com", "pw")
        # Lookups of names that cannot be stored are simply unknown.
        self.assertIsNone(await self.store.getSubscriber("x" * 200, "example.com"))

    async def test_caseInsensitive(self) -> None:
        await self.store.addSubscriber("Alice", "EXAMPLE.com", "secret")
        for username, domain in (("alice", "example.com"), ("ALICE", "Example.Com")):
            self.store.cache.clear()
            alice = await self.store.getSubscriber(username, domain)
            assert alice is not None
            self.assertEqual((alice.username, alice.domain), ("alice", "example.com"))
            self.assertEqual(alice.ha1, computeHA1("alice", "example.com", "secret"))
        await self.store.removeSubscriber("ALICE", "example.COM")
        self.assertIsNone(await self.store.getSubscriber("alice", "example.com"))

    async def test_sqlMetacharacters(self) -> None:
        await self.store.addSubscriber(EVIL, "example.com", "p'w\"; --")
        await self.store.addSubscriber("o", "example.com", "pw")
        self.store.cache.clear()
        found = await self.store.getSubscriber(EVIL, "example.com")
        assert found is not None
        self.assertEqual(found.username, EVIL.lower())
        self.assertEqual(found.ha1, computeHA1(EVIL.lower(), "example.com", "p'w\"; --"))
        self.assertIsNone(await self.store.getSubscriber("o'brien", "example.com"))
        names = [s.username for s in await self.store.listSubscribers("example.com")]
        self.assertEqual(names, ["o", EVIL.lower()])
        engine = create_engine(self.url)
        self.assertTrue(inspect(engine).has_table("subscriber"))
        engine.dispose()
        await self.store.setPassword(EVIL, "example.com", "new")
        await self.store.removeSubscriber(EVIL, "example.com")
        self.assertIsNone(await self.store.getSubscriber(EVIL, "example.com"))

    async def test_nonAsciiStoredExactly(self) -> None:
        await self.store.addSubscriber("Müller", "example.com", "pw")
        self.assertIsNone(await self.store.getSubscriber("muller", "example.com"))
        found = await self.store.getSubscriber("MÜLLER", "example.com")
        assert found is not None
        self.assertEqual(found.username, "müller")

    async def test_setPassword(self) -> None:
        await self.store.addSubscriber("alice", "example.com", "old")
        await self.store.getSubscriber("alice", "example.com")
        await self.store.setPassword("Alice", "example.com", "new")
        # The write invalidated the cached entry.
        alice = await self.store.getSubscriber("alice", "example.com")
        assert alice is not None
        self.assertEqual(alice.ha1, computeHA1("alice", "example.com", "new"))
        self.assertEqual(alice.ha1Sha256, computeHA1("alice", "example.com", "new", "SHA-256"))

    async def test_writesInvalidateCache(self) -> None:
        self.assertIsNone(await self.store.getSubscriber("carol", "example.com"))
        queries = self.db.queries
        self.assertIsNone(await self.store.getSubscriber("carol", "example.com"))
        self.assertEqual(self.db.queries, queries, "negative result not cached")
        await self.store.addSubscriber("carol", "example.com", "pw")
        self.assertIsNotNone(await self.store.getSubscriber("carol", "example.com"))
        queries = self.db.queries
        self.assertIsNotNone(await self.store.getSubscriber("CAROL", "example.com"))
        self.assertEqual(self.db.queries, queries, "positive result not cached")
        await self.store.removeSubscriber("carol", "example.com")
        self.assertIsNone(await self.store.getSubscriber("carol", "example.com"))

    async def test_list(self) -> None:
        for username, domain in (("b", "two.example"), ("a", "two.example"), ("z", "one.example"), ("c", "two.example")):
            await self.store.addSubscriber(username, domain, "pw")
        everyone = await self.store.listSubscribers()
        self.assertEqual([s.aor for s in everyone], ["z@one.example", "a@two.example", "b@two.example", "c@two.example"])
        two = await self.store.listSubscribers("TWO.example", limit=2, offset=1)
        self.assertEqual([s.aor for s in two], ["b@two.example", "c@two.example"])
        self.assertEqual(await self.store.listSubscribers("three.example"), [])


    async def test_preload(self) -> None:
        """preload fills the cache (bounded by its size); lookups then need no query."""
        for name in ("a", "b", "c"):
            await self.store.addSubscriber(name, "two.example", "pw")
        await self.store.addSubscriber("z", "one.example", "pw")
        self.store.cache.clear()
        self.assertEqual(await self.store.preload(page=2), 4)
        queries = self.db.queries
        found = await self.store.getSubscriber("B", "two.example")
        self.assertEqual(found.aor, "b@two.example")
        self.assertIsNotNone(await self.store.getSubscriber("z", "one.example"))
        self.assertEqual(self.db.queries, queries)
        self.store.cache.clear()
        self.assertEqual(await self.store.preload(limit=3), 3)
        self.assertEqual(len(self.store.cache), 3)

    async def test_batchedMisses(self) -> None:
        """Concurrent misses of different keys are read together: found and absent ones."""
        for name in ("a", "b", "c", "d"):
            await self.store.addSubscriber(name, "example.com", "pw")
        self.store.cache.clear()
        self.store.maxConcurrentReads = 1
        queries = self.db.queries
        results = await defer.gatherResults([
            self.store.getSubscriber(n, "example.com") for n in ("a", "b", "nobody", "c", "d")
        ])
        self.assertEqual([r.username if r else None for r in results], ["a", "b", None, "c", "d"])
        self.assertEqual(self.db.queries - queries, 2, "one read, then one batch of the 4 waiting")


class SQLiteSubscriberStoreTests(SubscriberStoreTestsMixin, TestCase):
    def makeURL(self) -> str:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        return f"sqlite:///{directory}/subscribers.sqlite"


class MariaDBSubscriberStoreTests(SubscriberStoreTestsMixin, TestCase):
    def makeURL(self) -> str:
        reason = mariadb.sharedServerReason()
        if reason:
            raise SkipTest(reason)
        url, name = mariadb.createScratchDatabase()
        self.addCleanup(mariadb.dropDatabase, name)
        return url
