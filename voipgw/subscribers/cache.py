# -*- test-case-name: tests.test_subscribers_cache -*-
"""
A bounded, expiring lookup cache that coalesces concurrent lookups.

Pure Twisted code on an injected clock: no database, no threads.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Generic, Hashable, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Pending(Generic[V]):
    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: list[defer.Deferred[V | None]] = []


class LookupCache(Generic[K, V]):
    """
    Cache C{fetch(key)} results for C{ttl} seconds (C{negativeTTL} for
    C{None} results), keeping at most C{maxSize} entries (least recently
    used evicted first).

    While a fetch for a key is in flight, further L{get}s of that key wait
    for it instead of starting another: a burst of lookups is one query.
    Failures are passed to every waiter and not cached.  L{invalidate}
    drops an entry, and the result of a fetch that was in flight when the
    key was invalidated is delivered to its waiters but not cached.

    A C{ttl} of 0 disables caching of found values (coalescing remains);
    likewise C{negativeTTL} for C{None}.
    """

    def __init__(self, clock: Any, ttl: float, negativeTTL: float, maxSize: int) -> None:
        if ttl < 0 or negativeTTL < 0:
            raise ValueError("cache TTLs must not be negative")
        if maxSize < 1:
            raise ValueError("cache size must be at least 1")
        self._clock = clock
        self.ttl = ttl
        self.negativeTTL = negativeTTL
        self.maxSize = maxSize
        self._entries: OrderedDict[K, tuple[float, V | None]] = OrderedDict()
        self._pending: dict[K, _Pending[V]] = {}
        self.hits = 0
        self.misses = 0
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        entry = self._entries.get(key)  # type: ignore[arg-type]
        return entry is not None and entry[0] > self._clock.seconds()

    def get(self, key: K, fetch: Callable[[K], "defer.Deferred[V | None]"]) -> "defer.Deferred[V | None]":
        """A Deferred firing with the cached or freshly fetched value of C{key}."""
        entry = self._entries.get(key)
        if entry is not None:
            expires, value = entry
            if expires > self._clock.seconds():
                self._entries.move_to_end(key)
                self.hits += 1
                return defer.succeed(value)
            del self._entries[key]
        waiter: defer.Deferred[V | None] = defer.Deferred()
        pending = self._pending.get(key)
        if pending is not None:
            self.coalesced += 1
            pending.waiters.append(waiter)
            return waiter
        self.misses += 1
        pending = _Pending()
        pending.waiters.append(waiter)
        self._pending[key] = pending
        try:
            result = fetch(key)
        except BaseException:
            result = defer.fail(Failure())
        result.addBoth(self._fetched, key, pending)
        return waiter

    def _fetched(self, result: "V | None | Failure", key: K, pending: _Pending[V]) -> None:
        current = self._pending.get(key) is pending
        if current:
            del self._pending[key]
            if not isinstance(result, Failure):
                self._store(key, result)
        for waiter in pending.waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    def _store(self, key: K, value: V | None) -> None:
        ttl = self.ttl if value is not None else self.negativeTTL
        if ttl <= 0:
            return
        self._entries[key] = (self._clock.seconds() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxSize:
            self._entries.popitem(last=False)

    def put(self, key: K, value: V | None) -> None:
        """Store C{value} for C{key} (as a fetch would), unless a fetch of it is in flight."""
        if key not in self._pending:
            self._store(key, value)

    def invalidate(self, key: K) -> None:
        """Forget C{key}; an in-flight fetch of it will not be cached."""
        self._entries.pop(key, None)
        self._pending.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
        self._pending.clear()
