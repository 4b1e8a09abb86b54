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


import math  # noqa: E402

from hypothesis import given, settings, strategies as st  # noqa: E402

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("save"), st.integers(0, 4), st.integers(0, 2), st.floats(0.5, 40.0)),
        st.tuples(st.just("remove"), st.integers(0, 4), st.integers(0, 2)),
        st.tuples(st.just("removeAll"), st.integers(0, 4)),
        st.tuples(st.just("advance"), st.floats(0.0, 15.0)),
    ),
    max_size=60,
)


class MemoryModelTests(TestCase):
    """The wheel and lazy skipping agree with a naive model under random operations."""

    @settings(max_examples=200, deadline=None)
    @given(_ops)
    def test_againstModel(self, ops: list) -> None:
        clock = task.Clock()
        expired: list = []
        store = MemoryLocationStore(clock, onExpired=expired.append)
        store.compactFactor = 1  # exercise rebuilding too
        store.start()
        model: dict = {}
        for op in ops:
            now = clock.seconds()
            if op[0] == "save":
                b = makeBinding(f"u{op[1]}@x", op[2], now + op[3])
                store.save(b)
                model[(b.aor, b.key)] = b
            elif op[0] == "remove":
                aor = f"u{op[1]}@x"
                key = makeBinding(aor, op[2]).key
                result = self.successResultOf(store.remove(aor, key))
                b = model.pop((aor, key), None)
                if b is None or b.expires > now:  # an expired one may be gone already
                    self.assertEqual(result, b is not None)
            elif op[0] == "removeAll":
                aor = f"u{op[1]}@x"
                n = sum(1 for k in model if k[0] == aor)
                live = sum(1 for k, b in model.items() if k[0] == aor and b.expires > now)
                self.assertTrue(live <= self.successResultOf(store.removeAll(aor)) <= n)
                model = {k: v for k, v in model.items() if k[0] != aor}
            else:
                clock.advance(op[1])
                now = clock.seconds()
                # the timer removes a binding by the end of the second it expires in
                for key, b in list(model.items()):
                    if math.ceil(b.expires) <= now:
                        del model[key]
                live = sum(1 for b in model.values() if b.expires > now)
                self.assertTrue(live <= store.stats()["bindings"] <= len(model))
            now = clock.seconds()
            for aor in {f"u{i}@x" for i in range(5)}:
                live = sorted((b for (a, _), b in model.items() if a == aor and b.expires > now),
                              key=lambda b: b.key)
                got = sorted(self.successResultOf(store.lookup(aor, now)), key=lambda b: b.key)
                self.assertEqual(got, live)
        clock.advance(100)
        self.assertEqual(store.stats()["bindings"], 0)
        self.assertEqual(store.stats()["aors"], 0)
        self.assertEqual(clock.getDelayedCalls(), [])


import dataclasses  # noqa: E402
import inspect  # noqa: E402

from voipgw.location.binding import Binding  # noqa: E402


class BindingConstructorTests(TestCase):
    """L{Binding}'s faster C{__init__} behaves as the dataclass one did."""

    def test_signature(self) -> None:
        params = inspect.signature(Binding).parameters
        self.assertEqual(list(params), [f.name for f in dataclasses.fields(Binding)])
        for f in dataclasses.fields(Binding):
            expected = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
            self.assertEqual(params[f.name].default, expected)
        self.assertEqual(Binding.__init__.__qualname__, "Binding.__init__")

    def test_positionalKeywordAndDefaults(self) -> None:
        b = Binding("a@example.com", "sip:a@h", 10.0, q=0.5, extra=(("x", "y"),))
        self.assertEqual(dataclasses.astuple(b), ("a@example.com", "sip:a@h", 10.0, 0.5, "", 0, (), "", "", 0, "", "", 0.0, 0, (("x", "y"),)))
        self.assertEqual(Binding(*dataclasses.astuple(b)), b)
        self.assertEqual(hash(Binding(*dataclasses.astuple(b))), hash(b))
        self.assertEqual(b.evolve(cseq=2).cseq, 2)

    def test_arguments(self) -> None:
        self.assertRaises(TypeError, Binding, "a@example.com")
        self.assertRaises(TypeError, Binding, "a", "c", 1.0, nope=1)
        self.assertRaises(TypeError, Binding, "a", "c", 1.0, aor="b")

    def test_stillFrozen(self) -> None:
        b = Binding("a@example.com", "sip:a@h", 10.0)
        with self.assertRaises(dataclasses.FrozenInstanceError):
            b.cseq = 3  # type: ignore[misc]
        self.assertFalse(hasattr(b, "__dict__"))
