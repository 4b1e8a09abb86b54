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

    def test_transactionIdentifiers(self) -> None:
        branches = {TransactionLayer.newBranch() for _ in range(1000)}
        tags = {TransactionLayer.newTag() for _ in range(1000)}
        self.assertEqual((len(branches), len(tags)), (1000, 1000))
        self.assertTrue(all(b.startswith("z9hG4bK") and len(b) == 27 for b in branches))
