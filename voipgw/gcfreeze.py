# -*- test-case-name: tests.test_gcfreeze -*-
"""
Keeping a worker's garbage collections short by freezing old objects.

A worker holds millions of objects that live for seconds or longer: the
transactions kept for timers J/K/L/M (32 s), the calls in progress, the
location table, the subscriber cache.  CPython's full collection walks
every one of them, and it runs each time the objects promoted since the
last one reach a quarter of the old generation: at 1,000 calls/s that was
a pause of several seconds every few seconds (measured with
L{voipgw.gcwatch}), long enough for the overload guard to shed calls and
for clients to retransmit.

L{OldObjectFreezer} calls C{gc.freeze()} every C{interval} seconds: every
object alive then moves to the permanent generation, which no collection
walks, so a collection only ever sees objects younger than C{interval}.
Frozen objects are still freed by reference counting when they are no
longer used (a finished transaction, a removed binding).  What freezing
gives up is the collection of *reference cycles* among frozen objects; the
per-message paths keep none (the proxy breaks its own), and to bound what
leaks elsewhere the freezer counts the frozen objects every C{checkEvery}
seconds and, when they have grown to C{growthLimit} times what the last
full collection left (and above C{floor}), unfreezes everything and runs
one full collection, logged with its pause -- at most once every
C{fullInterval} seconds, because growth alone cannot tell a leak from a
busier node: a registration storm doubles the live objects too, and the
full collection it triggered paused a worker 3.2 s in the middle of the
storm (measured).
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable, Optional

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from voipgw.gcwatch import addStatsGauges

#: Seconds between freezes (the default of [node] gc_freeze_interval).
DEFAULT_INTERVAL = 1.0


class OldObjectFreezer:
    """
    @param clock: C{IReactorTime} driving the freezes.
    @param interval: seconds between C{gc.freeze()} calls.
    @param checkEvery: seconds between counts of the frozen objects (an
        O(n) walk, so not every interval).
    @param growthLimit: run a full collection when the frozen objects have
        grown to this multiple of what the last full collection left.
    @param floor: ... and number more than this.
    @param fullInterval: seconds between two such full collections at least
        (the first may come C{fullInterval} after L{start}).
    """

    log = Logger()

    def __init__(
        self,
        clock: Any,
        interval: float = DEFAULT_INTERVAL,
        checkEvery: float = 60.0,
        growthLimit: float = 2.0,
        floor: int = 250_000,
        fullInterval: float = 1800.0,
        gcModule: Any = gc,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if interval <= 0:
            raise ValueError("the freeze interval must be positive")
        self.clock = clock
        self.interval = interval
        self.checkEvery = checkEvery
        self.growthLimit = growthLimit
        self.floor = floor
        self.fullInterval = fullInterval
        self._lastFull = 0.0
        self._gc = gcModule
        self._timer = timer
        self._loop: Optional[LoopingCall] = None
        self._sinceCheck = 0.0
        #: Frozen objects after the last full collection.
        self.baseline = 0
        self.freezes = 0
        self.fullCollections = 0
        self.lastFullPause = 0.0
        self.lastFullFreed = 0
        self.frozen = 0

    def start(self) -> None:
        """Freeze now (what start-up built) and every C{interval} seconds."""
        if self._loop is not None:
            return
        self._gc.freeze()
        self.baseline = self.frozen = self._gc.get_freeze_count()
        self._lastFull = self.clock.seconds()
        loop = self._loop = LoopingCall(self._tick)
        loop.clock = self.clock
        loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop is not None:
            if self._loop.running:
                self._loop.stop()
            self._loop = None

    def _tick(self) -> None:
        self._gc.freeze()
        self.freezes += 1
        self._sinceCheck += self.interval
        if self._sinceCheck < self.checkEvery:
            return
        self._sinceCheck = 0.0
        self.frozen = self._gc.get_freeze_count()
        if (self.frozen > max(self.baseline * self.growthLimit, self.floor)
                and self.clock.seconds() - self._lastFull >= self.fullInterval):
            self.collectAll()

    def collectAll(self) -> int:
        """Unfreeze, run a full collection, freeze again; returns the objects freed."""
        before = self.frozen
        started = self._timer()
        self._gc.unfreeze()
        freed = int(self._gc.collect())
        self._gc.freeze()
        pause = self._timer() - started
        self.baseline = self.frozen = self._gc.get_freeze_count()
        self._lastFull = self.clock.seconds()
        self.fullCollections += 1
        self.lastFullPause = pause
        self.lastFullFreed = freed
        self.log.warn(
            "full garbage collection over {before} frozen objects: {freed} freed in {pauseMs:.0f} ms, "
            "{after} kept",
            before=before, freed=freed, pauseMs=pause * 1000, after=self.baseline,
        )
        return freed

    def stats(self) -> dict[str, float]:
        return {
            "freezes": self.freezes, "frozen_objects": self.frozen, "full_collections": self.fullCollections,
            "last_full_pause_ms": round(self.lastFullPause * 1000, 1), "last_full_freed": self.lastFullFreed,
        }

    def addGauges(self, counters: Any) -> None:
        """Publish L{stats} as C{gc.freeze.*} gauges of a L{voipgw.stats.Counters}."""
        addStatsGauges(counters, "gc.freeze.", self.stats)

