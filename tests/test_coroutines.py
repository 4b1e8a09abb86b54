"""Tests for L{voipgw.coroutines}."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from twisted.python.failure import Failure

from voipgw.coroutines import runCoroutine, startCoroutine


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


class RunCoroutineTests(TestCase):
    """L{runCoroutine}: effects only, failures to a callback, now or later."""

    def test_synchronousFinishCallsNothing(self) -> None:
        failures: list[Failure] = []
        done: list[int] = []

        async def work() -> None:
            done.append(await defer.succeed(1))

        runCoroutine(work(), failures.append)
        self.assertEqual((done, failures), ([1], []))

    def test_synchronousFailureReported(self) -> None:
        failures: list[Failure] = []

        async def work() -> None:
            await defer.succeed(None)
            raise ValueError("bad")

        runCoroutine(work(), failures.append)
        self.assertEqual(len(failures), 1)
        self.assertTrue(failures[0].check(ValueError))

    def test_laterFailureReported(self) -> None:
        failures: list[Failure] = []
        waiting: defer.Deferred[int] = defer.Deferred()
        steps: list[int] = []

        async def work() -> None:
            steps.append(await waiting)
            raise KeyError("late")

        runCoroutine(work(), failures.append)
        self.assertEqual((steps, failures), ([], []))
        waiting.callback(7)
        self.assertEqual(steps, [7])
        self.assertEqual(len(failures), 1)
        self.assertTrue(failures[0].check(KeyError))

    def test_laterSuccessReportsNothing(self) -> None:
        failures: list[Failure] = []
        waiting: defer.Deferred[int] = defer.Deferred()
        steps: list[int] = []

        async def work() -> None:
            steps.append(await waiting)

        runCoroutine(work(), failures.append)
        waiting.callback(3)
        self.assertEqual((steps, failures), ([3], []))
