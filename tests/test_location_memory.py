"""Tests for L{voipgw.location.memory} and L{voipgw.location.service}."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial.unittest import TestCase

from voipgw.location.memory import MemoryLocationStore
from voipgw.location.service import LocationService
from voipgw.location.testing import LocationStoreTestsMixin, makeBinding


class MemoryStoreContractTests(LocationStoreTestsMixin, TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryLocationStore(self.clock)

    def currentTime(self) -> float:
        return self.clock.seconds()


class MemoryExpiryTests(TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.expired: list = []
        self.store = MemoryLocationStore(self.clock, onExpired=self.expired.append)
        self.service = LocationService(self.store)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def lookup(self, aor: str) -> list:
        return self.successResultOf(self.store.lookup(aor, self.clock.seconds()))

    def test_name(self) -> None:
        self.assertEqual(self.service.name, "location")
        self.assertIs(self.service.store, self.store)

    def test_expiresOnTime(self) -> None:
        """One timer fires at the earliest expiry and removes exactly the due bindings."""
        early, late = makeBinding("a@x", 1, 30), makeBinding("b@x", 2, 90)
        self.store.save(late)
        self.store.save(early)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 30)
        self.clock.advance(29)
        self.assertEqual(self.expired, [])
        self.clock.advance(1)
        self.assertEqual(self.expired, [early])
        self.assertEqual(self.store.stats()["bindings"], 1)
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 90)
        self.clock.advance(60)
        self.assertEqual(self.expired, [early, late])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.store.stats()["aors"], 0)

    def test_refreshPostponesExpiry(self) -> None:
        """A stale heap entry left by a refresh is skipped, not acted on."""
        b = makeBinding("a@x", 1, 30)
        self.store.save(b)
        refreshed = b.evolve(expires=100.0)
        self.store.save(refreshed)
        self.clock.advance(30)
        self.assertEqual(self.expired, [])
        self.assertEqual(self.lookup("a@x"), [refreshed])
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 100)
        self.clock.advance(70)
        self.assertEqual(self.expired, [refreshed])

    def test_removedNotExpired(self) -> None:
        b = makeBinding("a@x", 1, 30)
        self.store.save(b)
        self.store.remove("a@x", b.key)
        self.clock.advance(31)
        self.assertEqual(self.expired, [])

    def test_earlierSaveReschedules(self) -> None:
        self.store.save(makeBinding("a@x", 1, 100))
        self.store.save(makeBinding("b@x", 1, 10))
        calls = self.clock.getDelayedCalls()
        self.assertEqual([c.getTime() for c in calls], [10])

    def test_stopCancelsTimer(self) -> None:
        self.store.save(makeBinding("a@x", 1, 100))
        self.successResultOf(self.service.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(200)
        self.assertEqual(self.expired, [])
        self.successResultOf(self.service.startService())
        self.assertEqual(self.expired, [])
        self.clock.advance(0)
        self.assertEqual(len(self.expired), 1)

    def test_heapCompaction(self) -> None:
        """Refreshing one binding many times does not grow the heap without bound."""
        b = makeBinding("a@x", 1, 10)
        for i in range(5000):
            self.store.save(b.evolve(expires=float(10 + i)))
        self.assertLessEqual(self.store.stats()["wheelEntries"], 2 * 1 + 1024 + 1)
        self.clock.advance(5008)
        self.assertEqual(self.expired, [])
        self.clock.advance(1)
        self.assertEqual(len(self.expired), 1)

    def test_manyExpireInOneTick(self) -> None:
        for i in range(1000):
            self.store.save(makeBinding(f"u{i}@x", i, 50 + (i % 10)))
        self.clock.advance(55)
        self.assertEqual(len(self.expired), 600)
        self.assertEqual(self.successResultOf(self.store.count()), 400)

    def test_serviceState(self) -> None:
        self.store.save(makeBinding("a@x", 1, 100))
        self.assertEqual(self.service.state()["bindings"], 1)
