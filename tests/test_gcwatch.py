"""Tests for L{voipgw.gcwatch}."""

from __future__ import annotations

import gc

from twisted.internet import task
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import TestCase

from voipgw.gcwatch import GCWatch
from voipgw.stats import Counters


class FakeTimer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class GCWatchTests(TestCase):
    def setUp(self) -> None:
        self.timer = FakeTimer()
        self.watch = GCWatch(task.Clock(), slow=0.1, timer=self.timer)
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def collect(self, generation: int, pause: float) -> None:
        self.watch._callback("start", {"generation": generation})
        self.timer.now += pause
        self.watch._callback("stop", {"generation": generation, "collected": 7, "uncollectable": 0})

    def test_countsAndLongestPause(self) -> None:
        self.collect(0, 0.001)
        self.collect(0, 0.003)
        self.collect(2, 0.05)
        stats = self.watch.stats()
        self.assertEqual(stats["gen0.collections"], 2)
        self.assertEqual(stats["gen0.pause_max_ms"], 3.0)
        self.assertEqual(stats["gen0.pause_total_ms"], 4.0)
        self.assertEqual(stats["gen2.collections"], 1)
        self.assertEqual(stats["gen1.collections"], 0)

    def test_slowPauseLogged(self) -> None:
        self.collect(1, 0.01)
        self.assertEqual([e for e in self.events if e.get("generation") is not None], [])
        self.collect(2, 0.25)
        [event] = [e for e in self.events if e.get("generation") is not None]
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(event["generation"], 2)
        self.assertEqual(round(event["pauseMs"]), 250)

    def test_gauges(self) -> None:
        counters = Counters()
        self.watch.addGauges(counters)
        self.collect(2, 0.02)
        snapshot = counters.snapshot("gc.")
        self.assertEqual(snapshot["gc.gen2.collections"], 1)
        self.assertEqual(snapshot["gc.gen2.pause_max_ms"], 20.0)

    def test_realCollectionsTimed(self) -> None:
        watch = GCWatch(task.Clock())
        watch.install()
        self.addCleanup(watch.uninstall)
        gc.collect()
        self.assertEqual(watch.stats()["gen2.collections"], 1)
        watch.uninstall()
        gc.collect()
        self.assertEqual(watch.stats()["gen2.collections"], 1)
