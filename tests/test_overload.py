"""Overload control (voipgw.overload) on task.Clock, and the dispatcher's 503."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from voipgw.dispatch import RequestDispatcher
from voipgw.errors import ConfigError
from voipgw.overload import OverloadGuard, OverloadService, overloadGuardFromSection
from voipgw.sip.message import parseMessage


def request(method: str, toTag: str = "", extra: str = "") -> object:
    to = "<sip:bob@example.com>" + (f";tag={toTag}" if toTag else "")
    return parseMessage(
        (f"{method} sip:bob@example.com SIP/2.0\r\n"
         "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n"
         "From: <sip:alice@example.com>;tag=1\r\n"
         f"To: {to}\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n").encode()
    )


class Lagging:
    """Make the reactor late: advance the clock past several probe intervals at once."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock

    def busy(self, seconds: float, steps: int) -> None:
        for _ in range(steps):
            self.clock.advance(seconds)

    def idle(self, interval: float, steps: int) -> None:
        for _ in range(steps):
            self.clock.advance(interval)


class OverloadGuardTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        # the admission lottery always draws 0.99: only a fraction above 0.99 admits
        self.guard = OverloadGuard(self.clock, interval=0.02, highLag=0.08, lowLag=0.02, retryAfter=3, smoothing=0.3,
                                   random=lambda: 0.99)
        self.guard.start()
        self.addCleanup(self.guard.stop)
        self.lag = Lagging(self.clock)

    def test_notOverloadedOnTime(self) -> None:
        self.lag.idle(0.02, 100)
        self.assertFalse(self.guard.overloaded)
        self.assertAlmostEqual(self.guard.lag, 0.0, places=6)
        self.assertTrue(self.guard.admit(request("INVITE")))

    def test_lateTimersDeclareOverload(self) -> None:
        # each probe runs 0.3 s late: the smoothed lag crosses 0.08 s
        self.lag.busy(0.32, 3)
        self.assertTrue(self.guard.overloaded)
        self.assertEqual(self.guard.episodes, 1)

    def test_oneLateTickIsNotOverload(self) -> None:
        self.lag.idle(0.02, 10)
        self.lag.busy(0.2, 1)
        self.assertFalse(self.guard.overloaded)

    def test_shedsNewWorkOnly(self) -> None:
        self.lag.busy(0.32, 3)
        for method in ("INVITE", "REGISTER", "OPTIONS", "SUBSCRIBE", "MESSAGE"):
            self.assertFalse(self.guard.admit(request(method)), method)
        for method in ("ACK", "BYE", "CANCEL", "PRACK", "UPDATE", "INFO"):
            self.assertTrue(self.guard.admit(request(method)), method)
        self.assertTrue(self.guard.admit(request("INVITE", toTag="x")), "re-INVITE in a dialog")
        self.assertEqual(self.guard.shed, 5)

    def test_recoversWhenLoadDrops(self) -> None:
        self.lag.busy(0.32, 3)
        self.assertTrue(self.guard.overloaded)
        self.lag.idle(0.02, 3)
        self.assertTrue(self.guard.overloaded, "hysteresis: not back below low_lag yet")
        self.lag.idle(0.02, 100)
        self.assertFalse(self.guard.overloaded)
        self.assertTrue(self.guard.admit(request("INVITE")))

    def test_gauge(self) -> None:
        value = [0]
        guard = OverloadGuard(self.clock, gauge=lambda: value[0], highGauge=100, lowGauge=80)
        guard.start()
        self.addCleanup(guard.stop)
        value[0] = 101
        self.clock.advance(guard.interval)
        self.assertTrue(guard.overloaded)
        self.assertEqual(guard.admitFraction, OverloadGuard.DECREASE)
        value[0] = 90
        self.lag.idle(guard.interval, 50)
        self.assertTrue(guard.overloaded)  # between the marks: the fraction holds
        self.assertEqual(guard.admitFraction, OverloadGuard.DECREASE)
        value[0] = 79
        self.lag.idle(guard.interval, 1)
        self.assertTrue(guard.overloaded)
        self.assertAlmostEqual(guard.admitFraction, OverloadGuard.DECREASE + OverloadGuard.INCREASE)
        self.lag.idle(guard.interval, 12)
        self.assertFalse(guard.overloaded)
        self.assertEqual(guard.admitFraction, 1.0)

    def test_adaptiveAdmission(self) -> None:
        """
        Overloaded, the guard admits a share of new requests that shrinks
        by a quarter per probe above the high mark (to a floor) and grows
        back 2 points per probe below the low mark; requests answering a
        challenge count double.
        """
        draws = iter([0.30, 0.30, 0.30, 0.10] * 10)
        value = [0]
        guard = OverloadGuard(self.clock, gauge=lambda: value[0], highGauge=100, lowGauge=80,
                              random=lambda: next(draws))
        guard.start()
        self.addCleanup(guard.stop)
        value[0] = 101
        self.lag.idle(guard.interval, 4)  # 1 -> 0.75 -> 0.5625 -> 0.42 -> 0.316
        self.assertAlmostEqual(guard.admitFraction, 0.75 ** 4)
        self.assertTrue(guard.admit(request("REGISTER")))  # 0.30 < 0.316
        self.lag.idle(guard.interval, 1)  # 0.237
        self.assertFalse(guard.admit(request("REGISTER")))  # 0.30 >= 0.237
        withCredentials = request("REGISTER", extra='Authorization: Digest username="bob"\r\n')
        self.assertTrue(guard.admit(withCredentials))  # 0.30 < 2 x 0.237
        self.assertTrue(guard.admit(request("REGISTER")))  # 0.10 < 0.237
        self.assertEqual(guard.shed, 1)
        self.lag.idle(guard.interval, 100)
        self.assertEqual(guard.admitFraction, OverloadGuard.MINIMUM_FRACTION)
        value[0] = 0
        self.lag.idle(guard.interval, 48)
        self.assertTrue(guard.overloaded)
        self.lag.idle(guard.interval, 2)
        self.assertFalse(guard.overloaded)

    def test_receiveQueueDelay(self) -> None:
        """Requests waiting in the receive queue trip the guard while the reactor is on time."""
        waited = [0.0]
        guard = OverloadGuard(self.clock, queueDelay=lambda: waited[0], highQueueDelay=0.25, lowQueueDelay=0.05,
                              smoothing=0.3, random=lambda: 0.99)
        guard.start()
        self.addCleanup(guard.stop)
        waited[0] = 0.2
        self.lag.idle(guard.interval, 50)
        self.assertFalse(guard.overloaded)  # below the high mark, however long
        waited[0] = 0.8
        self.lag.idle(guard.interval, 3)
        self.assertTrue(guard.overloaded)
        self.assertAlmostEqual(guard.lag, 0.0, places=6)
        self.assertFalse(guard.admit(request("REGISTER")))
        waited[0] = 0.06  # draining, not yet below the low mark
        self.lag.idle(guard.interval, 50)
        self.assertTrue(guard.overloaded)
        waited[0] = 0.0
        self.lag.idle(guard.interval, 80)
        self.assertFalse(guard.overloaded)
        self.assertEqual(guard.episodes, 1)
        self.assertIn("queue_delay", guard.stats())

    def test_stopCancelsProbe(self) -> None:
        self.guard.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.guard.running)

    def test_service(self) -> None:
        clock = task.Clock()
        guard = OverloadGuard(clock)
        service = OverloadService(guard)
        service.startService()
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        service.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_badThresholds(self) -> None:
        self.assertRaises(ValueError, OverloadGuard, self.clock, highLag=0.01, lowLag=0.02)

    def test_fromSection(self) -> None:
        guard = overloadGuardFromSection({"high_lag": "0.2", "retry_after": "7"}, self.clock)
        assert guard is not None
        self.assertEqual((guard.highLag, guard.retryAfter), (0.2, 7))
        self.assertIsNone(overloadGuardFromSection({"enabled": "no"}, self.clock))
        self.assertRaises(ConfigError, overloadGuardFromSection, {"high_lag": "0.1", "low_lag": "0.1"}, self.clock)
        guard = overloadGuardFromSection({"high_queue_delay": "0.4"}, self.clock, queueDelay=lambda: 0.0)
        assert guard is not None
        self.assertEqual((guard.highQueueDelay, guard.lowQueueDelay, guard.maxQueueAge), (0.4, 0.05, 0.5))
        guard = overloadGuardFromSection({"max_queue_age": "0"}, self.clock)
        assert guard is not None
        self.assertEqual((guard.highQueueDelay, guard.maxQueueAge), (0.2, 0.0))
        self.assertRaises(ConfigError, overloadGuardFromSection,
                          {"high_queue_delay": "0.1", "low_queue_delay": "0.2"}, self.clock)


class Transaction:
    def __init__(self) -> None:
        self.responses: list[tuple[int, list]] = []

    def respond(self, code: int, reason: object = None, headers: object = None) -> None:
        self.responses.append((code, list(headers or [])))


class Application:
    methods = frozenset({"REGISTER"})

    def __init__(self) -> None:
        self.handled: list[object] = []

    def handleRequest(self, request: object, transaction: object) -> None:
        self.handled.append(request)


class DispatcherOverloadTests(unittest.TestCase):
    def test_overloadedDispatcherAnswers503WithRetryAfter(self) -> None:
        clock = task.Clock()
        dispatcher = RequestDispatcher(transports=None, domains=["example.com"])
        app = Application()
        dispatcher.register(app)
        guard = OverloadGuard(clock, retryAfter=4, random=lambda: 0.5)
        dispatcher.overload = guard
        guard.start()
        self.addCleanup(guard.stop)
        transaction = Transaction()
        dispatcher.handleRequest(request("REGISTER"), transaction)
        self.assertEqual(len(app.handled), 1)
        self.assertEqual(transaction.responses, [])
        clock.advance(0.5)  # one long pause (a full GC) is not overload
        transaction = Transaction()
        dispatcher.handleRequest(request("REGISTER"), transaction)
        self.assertEqual(transaction.responses, [])
        for _ in range(10):  # sustained lateness is
            clock.advance(0.32)
        transaction = Transaction()
        dispatcher.handleRequest(request("REGISTER"), transaction)
        self.assertEqual(transaction.responses, [(503, [("Retry-After", "4")])])
        self.assertEqual(len(app.handled), 2)
        self.assertEqual(dispatcher.counters.get("rejected.overload"), 1)
        for _ in range(200):
            clock.advance(guard.interval)
        dispatcher.handleRequest(request("REGISTER"), Transaction())
        self.assertEqual(len(app.handled), 3)
