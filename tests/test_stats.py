"""Counters and gauges (voipgw.stats)."""

from __future__ import annotations

from twisted.trial import unittest

from voipgw.stats import Counters


class CountersTests(unittest.SynchronousTestCase):
    def test_incrementAndGet(self) -> None:
        counters = Counters()
        self.assertEqual(counters.get("in.request.OPTIONS"), 0)
        counters.increment("in.request.OPTIONS")
        counters.increment("in.request.OPTIONS")
        counters.increment("out.response.2xx", 5)
        self.assertEqual((counters.get("in.request.OPTIONS"), counters.get("out.response.2xx")), (2, 5))
        self.assertEqual(counters.get("never"), 0)
        self.assertNotIn("never", counters.names())

    def test_snapshotCountersAndGauges(self) -> None:
        counters = Counters()
        counters.increment("in.request.REGISTER")
        counters.increment("out.response.4xx")
        counters.addGauge("in.live", lambda: 7.0)
        self.assertEqual(counters.snapshot("in."), {"in.live": 7.0, "in.request.REGISTER": 1})
        self.assertEqual(list(counters.snapshot()), ["in.live", "in.request.REGISTER", "out.response.4xx"])
        self.assertEqual(list(counters.names()), ["in.live", "in.request.REGISTER", "out.response.4xx"])
        self.assertIn("out.response.4xx = 1", repr(counters))
