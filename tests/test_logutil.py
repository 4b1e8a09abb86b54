"""Rate-limited logging of attacker-triggered events."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial import unittest

from voipgw.logutil import RateLimitedLog


class RateLimitedLogTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict] = []
        self.clock = Clock()
        self.log = RateLimitedLog(Logger(observer=self.events.append), self.clock, interval=10, burst=3)

    def test_burstThenSilenceThenSummary(self) -> None:
        logged = [self.log.warn("parse", "bad message from {source}", source=f"10.0.0.{i}") for i in range(100)]
        self.assertEqual(logged.count(True), 3)
        self.assertEqual(len(self.events), 3)
        self.assertEqual(self.events[0]["source"], "10.0.0.0")
        self.clock.advance(10)
        self.assertTrue(self.log.warn("parse", "bad message from {source}", source="x"))
        self.assertEqual(self.events[-1]["suppressed"], 97)

    def test_keysIndependent(self) -> None:
        for _ in range(5):
            self.log.warn("parse", "p")
            self.log.warn("send", "s")
        self.assertEqual(len(self.events), 6)
