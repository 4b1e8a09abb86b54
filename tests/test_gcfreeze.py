"""Tests for L{voipgw.gcfreeze.OldObjectFreezer}."""

from __future__ import annotations

import gc

from twisted.internet import task
from twisted.trial.unittest import TestCase

from voipgw.config import ConfigError, parseConfig
from voipgw.gcfreeze import OldObjectFreezer
from voipgw.stats import Counters


class FakeGC:
    """The parts of the gc module the freezer uses, with a frozen count to steer."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.frozenCount = 100
        self.freed = 0

    def freeze(self) -> None:
        self.calls.append("freeze")

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")

    def collect(self) -> int:
        self.calls.append("collect")
        self.frozenCount -= self.freed
        return self.freed

    def get_freeze_count(self) -> int:
        return self.frozenCount


class FreezerTests(TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.gc = FakeGC()
        self.freezer = OldObjectFreezer(self.clock, interval=1.0, checkEvery=10.0, growthLimit=2.0,
                                        floor=150, fullInterval=15.0, gcModule=self.gc)
        self.freezer.start()
        self.addCleanup(self.freezer.stop)

    def test_freezesEveryInterval(self) -> None:
        self.assertEqual(self.gc.calls, ["freeze"])
        self.clock.advance(0.5)
        self.assertEqual(self.gc.calls, ["freeze"])
        self.clock.pump([0.5, 1.0, 1.0])
        self.assertEqual(self.gc.calls, ["freeze"] * 4)
        self.assertEqual(self.freezer.stats()["freezes"], 3)

    def test_fullCollectionWhenFrozenObjectsDouble(self) -> None:
        self.gc.frozenCount = 190  # grown, but below twice the baseline (100 -> 200)
        self.clock.pump([1.0] * 10)
        self.assertNotIn("collect", self.gc.calls)
        self.gc.frozenCount = 250
        self.gc.freed = 120
        self.clock.pump([1.0] * 10)
        self.assertEqual(self.gc.calls[-3:], ["unfreeze", "collect", "freeze"])
        stats = self.freezer.stats()
        self.assertEqual(stats["full_collections"], 1)
        self.assertEqual(stats["last_full_freed"], 120)
        self.assertEqual(self.freezer.baseline, 130)

    def test_fullCollectionsSpacedOut(self) -> None:
        """Growth that is not a leak (a busier node) costs one full collection per fullInterval at most."""
        self.gc.frozenCount = 250
        self.clock.pump([1.0] * 10)  # the first check: 10 s after start, within fullInterval
        self.assertNotIn("collect", self.gc.calls)
        self.clock.pump([1.0] * 10)  # 20 s: due
        self.assertEqual(self.gc.calls.count("collect"), 1)
        self.gc.frozenCount = 1000  # still growing, nothing freed
        self.clock.pump([1.0] * 10)  # 30 s: the last full collection was 10 s ago
        self.assertEqual(self.gc.calls.count("collect"), 1)
        self.clock.pump([1.0] * 10)  # 40 s
        self.assertEqual(self.gc.calls.count("collect"), 2)

    def test_floor(self) -> None:
        """Below the floor, growth alone does not trigger a full collection."""
        self.gc.frozenCount = 140  # fourteen times the baseline, but under the floor
        self.freezer.baseline = 10
        self.clock.pump([1.0] * 10)
        self.assertNotIn("collect", self.gc.calls)

    def test_stop(self) -> None:
        self.freezer.stop()
        self.clock.pump([1.0] * 5)
        self.assertEqual(self.gc.calls, ["freeze"])

    def test_gauges(self) -> None:
        counters = Counters()
        self.freezer.addGauges(counters)
        self.clock.advance(1.0)
        self.assertEqual(counters.snapshot("gc.freeze.")["gc.freeze.freezes"], 1)


class RealCollectorTests(TestCase):
    def test_frozenObjectsFreedByReferenceCounting(self) -> None:
        """A frozen object nobody uses any more is freed at once, without a collection."""
        import weakref

        class Thing:
            pass

        thing = Thing()
        ref = weakref.ref(thing)
        gc.freeze()
        self.addCleanup(gc.unfreeze)
        self.assertGreater(gc.get_freeze_count(), 0)
        del thing
        self.assertIsNone(ref())


class ConfigTests(TestCase):
    def test_default(self) -> None:
        self.assertEqual(parseConfig({}).gcFreezeInterval, 1.0)

    def test_values(self) -> None:
        self.assertEqual(parseConfig({"node": {"gc_freeze_interval": "0"}}).gcFreezeInterval, 0.0)
        self.assertEqual(parseConfig({"node": {"gc_freeze_interval": "2.5"}}).gcFreezeInterval, 2.5)
        self.assertRaises(ConfigError, parseConfig, {"node": {"gc_freeze_interval": "soon"}})
        self.assertRaises(ConfigError, parseConfig, {"node": {"gc_freeze_interval": "-1"}})
