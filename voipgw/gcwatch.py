# -*- test-case-name: tests.test_gcwatch -*-
"""
Garbage-collection pauses, measured and reported.

A worker holds hundreds of thousands of live objects (bindings, cached
subscribers, transactions kept for timer J); a full collection walks all of
them while the reactor stands still, and a long pause looks like overload
(late timers, a full receive queue).  L{GCWatch} times every collection
(C{gc.callbacks}), keeps counts and the longest pause per generation for
the manhole (L{GCWatch.stats}, or the node's counters under C{gc.*}), and
logs each pause longer than C{slow} seconds, rate-limited.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable, Optional

from twisted.logger import Logger

from voipgw.logutil import RateLimitedLog


class GCWatch:
    """
    @param clock: C{seconds()} provider for the log rate limit.
    @param slow: pauses at least this long (seconds) are logged.
    @param timer: monotonic seconds (tests pass a fake).
    """

    log = Logger()

    def __init__(self, clock: Any, slow: float = 0.1, timer: Callable[[], float] = time.perf_counter) -> None:
        self.slow = slow
        self._timer = timer
        self._log = RateLimitedLog(self.log, clock, interval=60.0, burst=3)
        self._started: Optional[float] = None
        self.collections = [0, 0, 0]
        self.totalPause = [0.0, 0.0, 0.0]
        self.longestPause = [0.0, 0.0, 0.0]
        self.installed = False

    def install(self) -> None:
        """Start timing collections (idempotent)."""
        if not self.installed:
            gc.callbacks.append(self._callback)
            self.installed = True

    def uninstall(self) -> None:
        if self.installed:
            gc.callbacks.remove(self._callback)
            self.installed = False

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = self._timer()
            return
        if self._started is None:
            return
        pause = self._timer() - self._started
        self._started = None
        generation = min(max(int(info.get("generation", 2)), 0), 2)
        self.collections[generation] += 1
        self.totalPause[generation] += pause
        if pause > self.longestPause[generation]:
            self.longestPause[generation] = pause
        if pause >= self.slow:
            self._log.warn(
                "gc-pause",
                "garbage collection of generation {generation} paused the worker {pauseMs:.0f} ms "
                "({collected} objects freed) ({suppressed} similar suppressed)",
                generation=generation, pauseMs=pause * 1000, collected=info.get("collected", 0),
            )

    def stats(self) -> dict[str, float]:
        """Collections, total and longest pause (ms) per generation."""
        out: dict[str, float] = {}
        for generation in range(3):
            out[f"gen{generation}.collections"] = self.collections[generation]
            out[f"gen{generation}.pause_total_ms"] = round(self.totalPause[generation] * 1000, 1)
            out[f"gen{generation}.pause_max_ms"] = round(self.longestPause[generation] * 1000, 1)
        return out

    def addGauges(self, counters: Any) -> None:
        """Publish L{stats} as C{gc.*} gauges of a L{voipgw.stats.Counters}."""
        addStatsGauges(counters, "gc.", self.stats)


def addStatsGauges(counters: Any, prefix: str, stats: Callable[[], dict[str, float]]) -> None:
    """Publish each entry of C{stats()} as gauge C{prefix + name} of C{counters}."""
    for name in stats():
        counters.addGauge(prefix + name, _reader(stats, name))


def _reader(stats: Callable[[], dict[str, float]], name: str) -> Callable[[], float]:
    return lambda: stats()[name]
