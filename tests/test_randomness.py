"""Batched random tokens (voipgw.randomness)."""

from __future__ import annotations

import os

from twisted.trial import unittest

from voipgw.randomness import RandomPool
from voipgw.transaction.layer import TransactionLayer


class RandomPoolTests(unittest.TestCase):
    def test_slicesNeverRepeat(self) -> None:
        pool = RandomPool(chunk=64)
        tokens = [pool.hex(6) for _ in range(5000)]
        self.assertEqual(len(set(tokens)), len(tokens))
        self.assertTrue(all(len(t) == 12 and int(t, 16) >= 0 for t in tokens))

    def test_refillsWhenUsedUp(self) -> None:
        pool = RandomPool(chunk=16)
        first = pool.bytes(10)
        second = pool.bytes(10)  # does not fit in the rest of the batch
        self.assertEqual((len(first), len(second)), (10, 10))
        self.assertEqual(pool._at, 10)

    def test_largerThanChunk(self) -> None:
        self.assertEqual(len(RandomPool(chunk=8).bytes(100)), 100)

    def test_freshBatchAfterFork(self) -> None:
        pool = RandomPool()
        pool.bytes(6)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report its next token and leave at once
            os.write(write, pool.bytes(6))
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        childToken = os.read(read, 6)
        os.close(read)
        self.assertNotEqual(childToken, pool.bytes(6))

    def test_hexAndBytesShareTheBatch(self) -> None:
        """L{RandomPool.hex} and L{RandomPool.bytes} draw from one stream: no slice twice."""
        pool = RandomPool(chunk=64)
        pool._refill(0)
        batch = pool._buffer
        token = pool.hex(6)
        raw = pool.bytes(4)
        self.assertEqual(token, batch[0:6].hex())
        self.assertEqual(raw, batch[6:10])
        self.assertEqual(pool.hex(2), batch[10:12].hex())

    def _childTokens(self, pool: RandomPool, draw: str) -> tuple[bytes, bytes]:
        """Fork: the child's next C{draw} token and the parent's, as bytes."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report its next token and leave at once
            try:
                token = pool.bytes(6) if draw == "bytes" else bytes.fromhex(pool.hex(6))
                os.write(write, token)
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        childToken = os.read(read, 6)
        os.close(read)
        parentToken = pool.bytes(6) if draw == "bytes" else bytes.fromhex(pool.hex(6))
        return childToken, parentToken

    def test_freshHexAfterFork(self) -> None:
        """A forked child's hex tokens (To tags, branches) are not the parent's next ones."""
        pool = RandomPool()
        pool.hex(6)
        childToken, parentToken = self._childTokens(pool, "hex")
        self.assertEqual(len(childToken), 6)
        self.assertNotEqual(childToken, parentToken)

    def test_processPoolAfterFork(self) -> None:
        """The process-wide pool (what L{TransactionLayer.newTag} uses) is fresh in a child."""
        from voipgw import randomness

        randomness.POOL.hex(6)
        childToken, parentToken = self._childTokens(randomness.POOL, "hex")
        self.assertNotEqual(childToken, parentToken)

    def test_forkResetsEveryPool(self) -> None:
        """The at-fork hook empties the batch of every live pool, and only in the child."""
        from voipgw import randomness

        pool = RandomPool()
        pool.bytes(6)
        batch = pool._buffer
        randomness._resetAfterFork()  # what os.register_at_fork runs in a child
        self.assertEqual((pool._buffer, pool._hexBuffer, pool._at), (b"", "", 0))
        self.assertNotEqual(pool.bytes(6), batch[6:12])

    def test_noSystemCallPerDraw(self) -> None:
        """Drawing from a filled batch asks the kernel nothing (no getpid, no urandom)."""
        pool = RandomPool()
        pool.hex(6)
        calls = []
        self.patch(os, "getpid", lambda: calls.append("getpid") or 1)
        self.patch(os, "urandom", lambda n: calls.append("urandom") or b"\0" * n)
        for _ in range(100):
            pool.hex(6)
            pool.bytes(4)
        self.assertEqual(calls, [])

    def test_transactionIdentifiers(self) -> None:
        branches = {TransactionLayer.newBranch() for _ in range(1000)}
        tags = {TransactionLayer.newTag() for _ in range(1000)}
        self.assertEqual((len(branches), len(tags)), (1000, 1000))
        self.assertTrue(all(b.startswith("z9hG4bK") and len(b) == 27 for b in branches))
