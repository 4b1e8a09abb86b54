# -*- test-case-name: tests.test_randomness -*-
"""
Cryptographically random tokens, drawn from the kernel in batches.

Every SIP transaction needs fresh randomness (a To tag, RFC 3261 §19.3: at
least 32 random bits; a Via branch for every request sent).  One
C{os.urandom} call per token is a system call per message; this module
draws 4 KiB at a time and hands out slices.  A process that forks gets a
fresh batch (never the parent's remaining bytes): every pool is emptied in
the child by an C{os.register_at_fork} hook, so drawing a token costs no
system call (checking C{os.getpid()} on every draw did, one per request).
"""

from __future__ import annotations

import os
import weakref

_CHUNK = 4096

#: Every live pool, emptied in the child after a fork.
_POOLS: "weakref.WeakSet[RandomPool]" = weakref.WeakSet()


class RandomPool:
    """Slices of one C{os.urandom} batch, refilled when used up or after a fork."""

    def __init__(self, chunk: int = _CHUNK) -> None:
        self.chunk = chunk
        self._buffer = b""
        #: C{_buffer} as hex digits (two per byte), for L{hex}.
        self._hexBuffer = ""
        self._at = 0
        _POOLS.add(self)

    def _refill(self, count: int) -> None:
        self._buffer = os.urandom(max(self.chunk, count))
        self._hexBuffer = self._buffer.hex()
        self._at = 0

    def reset(self) -> None:
        """Forget the current batch: the next draw reads a fresh one (done in a forked child)."""
        self._buffer = b""
        self._hexBuffer = ""
        self._at = 0

    def _take(self, count: int) -> int:
        """Reserve the next C{count} bytes of the batch (refilled if short); their offset."""
        at = self._at
        if at + count > len(self._buffer):
            self._refill(count)
            at = 0
        self._at = at + count
        return at

    def bytes(self, count: int) -> bytes:
        """C{count} fresh random bytes (never handed out before)."""
        at = self._take(count)
        return self._buffer[at:at + count]

    def hex(self, count: int) -> str:
        """C{count} random bytes as 2*C{count} lower-case hex digits."""
        at = self._take(count)
        return self._hexBuffer[2 * at:2 * (at + count)]


def _resetAfterFork() -> None:
    for pool in list(_POOLS):
        pool.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_resetAfterFork)


#: The process-wide pool.
POOL = RandomPool()
