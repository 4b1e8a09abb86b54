# -*- test-case-name: tests.test_location_memory -*-
"""
The embedded location store: everything in this process's memory.

Bindings live in a dict of AOR -> tuple of its bindings.  An AOR has a
handful of contacts at most (the registrar bounds it), so a tuple searched by
key is as fast as a dict and costs 48 bytes instead of ~180: with a million
single-contact AORs that is the difference between fitting in 1 GiB or not
(measured with C{python -m voipgw.location.footprint}).

Expiry never scans the table.  It is a time wheel of one-second buckets:
every save appends the binding object itself (8 bytes) to the bucket
C{ceil(expires)}, a small heap holds the bucket numbers, and one timer on the
injected clock fires when the earliest bucket is due.  A binding is removed
only if it is still the very object stored for its key (identity), so
entries made stale by a refresh or a removal are skipped lazily; the wheel
is rebuilt when stale entries outnumber live ones, so memory stays
proportional to the number of bindings.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from voipgw.interfaces import ILocationStore
from voipgw.location.binding import Binding


@implementer(ILocationStore)
class MemoryLocationStore:
    """
    L{ILocationStore} in memory.

    @param clock: provides C{seconds()} and C{callLater()} (the reactor, or
        C{task.Clock} in tests); drives the expiry timer once L{start}ed.
    @param onExpired: optional C{callable(binding)} called for every binding
        removed by expiry (for example to send reg-event NOTIFYs).
    """

    log = Logger(namespace="voipgw.location.memory.MemoryLocationStore")

    #: Rebuild the wheel when it holds more than this many entries per
    #: stored binding (plus a constant), to drop stale entries in bulk.
    compactFactor = 2

    def __init__(self, clock: Any, onExpired: Callable[[Binding], None] | None = None) -> None:
        self._clock = clock
        self._onExpired = onExpired
        self._aors: dict[str, tuple[Binding, ...]] = {}
        self._wheel: dict[int, list[Binding]] = {}
        self._slots: list[int] = []  # heap of the keys of _wheel
        self._entries = 0
        self._count = 0
        self._timer: IDelayedCall | None = None
        self._timerAt = float("inf")
        self._running = False
        self.expiredTotal = 0

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "defer.Deferred[None]":
        """Arm the expiry timer."""
        self._running = True
        self._arm()
        return defer.succeed(None)

    def stop(self) -> "defer.Deferred[None]":
        """Cancel the expiry timer; the data stays."""
        self._running = False
        self._cancel()
        return defer.succeed(None)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timerAt = float("inf")

    def _arm(self) -> None:
        if not self._running:
            return
        if not self._slots:
            self._cancel()
            return
        at = self._slots[0]
        if self._timer is not None and self._timer.active() and self._timerAt <= at:
            return
        self._cancel()
        self._timerAt = at
        self._timer = self._clock.callLater(max(0.0, at - self._clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timerAt = float("inf")
        try:
            self._expire(self._clock.seconds())
        except Exception:
            self.log.failure("location expiry failed")
        self._arm()

    # -- ILocationStore --------------------------------------------------------

    def lookup(self, aor: str, now: float) -> "defer.Deferred[list[Binding]]":
        bindings = self._aors.get(aor)
        if not bindings:
            return defer.succeed([])
        return defer.succeed([b for b in bindings if b.expires > now])

    def save(self, binding: Binding) -> "defer.Deferred[None]":
        self._save(binding)
        return defer.succeed(None)

    def saveIfNewer(self, binding: Binding, now: float) -> bool:
        """
        Store C{binding} unless it has expired at C{now} or the stored
        binding with its key was updated later (a replicated change that
        arrives late must not undo a newer one).  Synchronous; returns
        whether it was stored.
        """
        if binding.expires <= now:
            return False
        key = binding.key
        aor = binding.aor
        old = self._aors.get(aor, ())
        updated = binding.updated
        for existing in old:
            if existing.updated > updated and existing.key == key:
                return False
        self._put(aor, key, binding, old)
        return True

    def _save(self, binding: Binding) -> None:
        aor = binding.aor
        self._put(aor, binding.key, binding, self._aors.get(aor, ()))

    def _put(self, aor: str, key: str, binding: Binding, old: tuple[Binding, ...]) -> None:
        """Store C{binding} (key C{key}) in place of C{old}'s binding with that key."""
        if not old:
            self._count += 1
            self._aors[aor] = (binding,)
        elif len(old) == 1 and old[0].key == key:
            # the common refresh: the AOR's only contact, again
            self._aors[aor] = (binding,)
        else:
            kept = tuple(b for b in old if b.key != key)
            if len(kept) == len(old):
                self._count += 1
            self._aors[aor] = kept + (binding,)
        self._schedule(binding)
        if self._entries > self.compactFactor * self._count + 1024:
            self._compact()

    def _schedule(self, binding: Binding) -> None:
        slot = math.ceil(binding.expires)
        bucket = self._wheel.get(slot)
        if bucket is None:
            bucket = self._wheel[slot] = []
            heapq.heappush(self._slots, slot)
            if slot < self._timerAt:
                self._arm()
        bucket.append(binding)
        self._entries += 1

    def remove(self, aor: str, key: str) -> "defer.Deferred[bool]":
        old = self._aors.get(aor)
        if not old:
            return defer.succeed(False)
        kept = tuple(b for b in old if b.key != key)
        if len(kept) == len(old):
            return defer.succeed(False)
        self._store(aor, kept)
        self._count -= 1
        return defer.succeed(True)

    def _store(self, aor: str, bindings: tuple[Binding, ...]) -> None:
        if bindings:
            self._aors[aor] = bindings
        else:
            self._aors.pop(aor, None)

    def removeAll(self, aor: str) -> "defer.Deferred[int]":
        bindings = self._aors.pop(aor, ())
        self._count -= len(bindings)
        return defer.succeed(len(bindings))

    def expire(self, now: float) -> "defer.Deferred[int]":
        n = self._expire(now)
        self._arm()
        return defer.succeed(n)

    def count(self) -> "defer.Deferred[int]":
        self._expire(self._clock.seconds())
        return defer.succeed(self._count)

    # -- internals -------------------------------------------------------------

    def _expire(self, now: float) -> int:
        slots, wheel = self._slots, self._wheel
        removed = 0
        limit = math.ceil(now)
        while slots and slots[0] <= limit:
            slot = slots[0]
            bucket = wheel[slot]
            if slot > now:
                # the current partial second: take the due ones, keep the rest
                due = [b for b in bucket if b.expires <= now]
                if not due:
                    break
                wheel[slot] = [b for b in bucket if b.expires > now]
                self._entries -= len(due)
                for b in due:
                    removed += self._drop(b)
                if not wheel[slot]:
                    heapq.heappop(slots)
                    del wheel[slot]
                break
            heapq.heappop(slots)
            del wheel[slot]
            self._entries -= len(bucket)
            for b in bucket:
                removed += self._drop(b)
        if removed:
            self.expiredTotal += removed
            self.log.debug("expired {count} location bindings", count=removed)
        return removed

    def _drop(self, b: Binding) -> int:
        """Remove C{b} if it is still the stored binding (not refreshed/removed)."""
        current = self._aors.get(b.aor)
        if not current or not any(x is b for x in current):
            return 0
        self._store(b.aor, tuple(x for x in current if x is not b))
        self._count -= 1
        if self._onExpired is not None:
            try:
                self._onExpired(b)
            except Exception:
                self.log.failure("onExpired hook failed for {aor}", aor=b.aor)
        return 1

    def _compact(self) -> None:
        """Rebuild the wheel from the live bindings (drops stale entries)."""
        self._wheel, self._slots, self._entries = {}, [], 0
        timerAt = self._timerAt
        self._timerAt = float("-inf")  # suppress re-arming while rebuilding
        for bindings in self._aors.values():
            for b in bindings:
                self._schedule(b)
        self._timerAt = timerAt
        self._arm()

    def stats(self) -> dict[str, int]:
        """Plain data for the manhole and the admin tool."""
        return {
            "bindings": self._count,
            "aors": len(self._aors),
            "wheelEntries": self._entries,
            "wheelSlots": len(self._slots),
            "expired": self.expiredTotal,
        }
