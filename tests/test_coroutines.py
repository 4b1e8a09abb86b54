"""Tests for L{voipgw.coroutines.startCoroutine}."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from voipgw.coroutines import startCoroutine


class StartCoroutineTests(TestCase):
    def test_synchronousResult(self) -> None:
        async def work() -> int:
            a = await defer.succeed(1)
            b = await defer.succeed(2)
            return a + b

        self.assertEqual(self.successResultOf(startCoroutine(work())), 3)

    def test_synchronousFailure(self) -> None:
        async def work() -> int:
            await defer.succeed(None)
            raise ValueError("bad")

        self.failureResultOf(startCoroutine(work()), ValueError)

    def test_failedDeferredRaisesInside(self) -> None:
        async def work() -> str:
            try:
                await defer.fail(KeyError("k"))
            except KeyError:
                return "caught"
            return "not caught"

        self.assertEqual(self.successResultOf(startCoroutine(work())), "caught")

    def test_waitsForAnUnfiredDeferred(self) -> None:
        """Twisted takes over at the first real wait and resumes with the result."""
        first: defer.Deferred[int] = defer.Deferred()
        second: defer.Deferred[int] = defer.Deferred()
        steps: list[str] = []

        async def work() -> int:
            steps.append("started")
            a = await first
            steps.append("resumed")
            b = await second
            return a + b

        d = startCoroutine(work())
        self.assertEqual(steps, ["started"])
        self.assertNoResult(d)
        first.callback(10)
        self.assertEqual(steps, ["started", "resumed"])
        self.assertNoResult(d)
        second.callback(5)
        self.assertEqual(self.successResultOf(d), 15)

    def test_unfiredDeferredFails(self) -> None:
        waiting: defer.Deferred[int] = defer.Deferred()

        async def work() -> int:
            return await waiting

        d = startCoroutine(work())
        waiting.errback(RuntimeError("store down"))
        self.failureResultOf(d, RuntimeError)

    def test_cancelWhileWaiting(self) -> None:
        waiting: defer.Deferred[int] = defer.Deferred()

        async def work() -> int:
            return await waiting

        d = startCoroutine(work())
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertTrue(waiting.called, "cancelling reaches the awaited Deferred")
