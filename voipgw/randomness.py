# -*- test-case-name: tests.test_randomness -*-
"""
Cryptographically random tokens, drawn from the kernel in batches.

Every SIP transaction needs fresh randomness (a To tag, RFC 3261 §19.3: at
least 32 random bits; a Via branch for every request sent).  One
C{os.urandom} call per token is a system call per message; this module
draws 4 KiB at a time and hands out slices.  A process that forks gets a
fresh batch (never the parent's remaining bytes).
"""

from __future__ import annotations

import os

_CHUNK = 4096


class RandomPool:
    """Slices of one C{os.urandom} batch, refilled when used up or after a fork."""

    def __init__(self, chunk: int = _CHUNK) -> None:
        self.chunk = chunk
        self._buffer = b""
        self._at = 0
        self._pid = -1

    def bytes(self, count: int) -> bytes:
        """C{count} fresh random bytes (never handed out before)."""
        at = self._at
        if at + count > len(self._buffer) or self._pid != os.getpid():
            self._buffer = os.urandom(max(self.chunk, count))
            self._pid = os.getpid()
            at = 0
        self._at = at + count
        return self._buffer[at:at + count]

    def hex(self, count: int) -> str:
        """C{count} random bytes as 2*C{count} lower-case hex digits."""
        return self.bytes(count).hex()


#: The process-wide pool.
POOL = RandomPool()
