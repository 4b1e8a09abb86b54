# -*- test-case-name: tests.test_transaction_server -*-
"""
Server transactions (RFC 3261 §17.2, RFC 6026 §7.1) driven through the
layer from wire bytes, on a L{task.Clock}, with T1 = 0.25 s, T2 = 2 s,
T4 = 3 s: every state, every timer, and the exact timing of each.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from voipgw.sip.message import Response
from voipgw.transaction import InviteServerTransaction, NonInviteServerTransaction, ServerTransaction, TimerSettings
from voipgw.transaction.base import Transaction
from voipgw.transport.address import Address

from tests.test_transaction_support import (
    BRANCH, PEER_TCP, PEER_UDP, SIXTY_FOUR_T1, T1, T2, T4, TIMERS, Harness, request, times,
)

#: Where UDP responses to PEER_UDP go: the top Via's sent-by.
REPLY_UDP = Address("udp", "198.51.100.7", 5060)


class TimerSettingsTests(unittest.TestCase):
    """The lettered timers derive from T1, T2 and T4 (RFC 3261 Table 4)."""

    def test_derived(self) -> None:
        t = TimerSettings(T1=0.25, T2=2.0, T4=3.0)
        self.assertEqual((t.A, t.E, t.G), (0.25, 0.25, 0.25))
        self.assertEqual((t.B, t.F, t.H, t.J, t.L, t.M), (16.0,) * 6)
        self.assertEqual(t.D, 32.0)
        self.assertEqual((t.I, t.K), (3.0, 3.0))

    def test_defaults(self) -> None:
        t = TimerSettings()
        self.assertEqual((t.T1, t.T2, t.T4, t.trying), (0.5, 4.0, 5.0, 0.2))
        self.assertEqual((t.B, t.D, t.I), (32.0, 32.0, 5.0))

    def test_timerDAtLeast32(self) -> None:
        """D is 64*T1 when that exceeds 32 s: the server may retransmit that long."""
        self.assertEqual(TimerSettings(T1=1.0, T2=4.0).D, 64.0)

    def test_invalid(self) -> None:
        self.assertRaises(ValueError, TimerSettings, T1=0)
        self.assertRaises(ValueError, TimerSettings, T1=5.0, T2=4.0)
        self.assertRaises(ValueError, TimerSettings, T4=0)
        self.assertRaises(ValueError, TimerSettings, trying=-1)


class ServerTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.clock = self.h.clock
        self.layer = self.h.layer
        self.user = self.h.user
        self.failures: list[tuple[Any, str, float]] = []

    def newTransaction(self, data: bytes, source: Address = PEER_UDP) -> Any:
        self.h.receive(data, source)
        self.assertEqual(len(self.user.requests), 1)
        transaction = self.user.requests[0][1]
        transaction.onFailure(lambda t, reason: self.failures.append((t, reason, self.clock.seconds())))
        return transaction

    def assertGone(self) -> None:
        self.assertEqual(self.layer.server, {})
        self.assertEqual(self.layer.client, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])


class InviteServerProceedingTests(ServerTestCase):
    """Proceeding: the delayed 100 Trying, provisional responses, retransmissions."""

    def test_tryingAfterDelay(self) -> None:
        """Without a TU response, 100 Trying goes out after exactly C{trying} seconds, without a To tag."""
        t = self.newTransaction(request())
        self.assertIsInstance(t, InviteServerTransaction)
        self.assertEqual(t.state, Transaction.PROCEEDING)
        self.h.advance(0.124)
        self.assertEqual(self.h.sent(), [])
        self.h.advanceTo(0.125)
        [trying] = self.h.sent()
        self.assertEqual((trying.message.code, trying.destination, trying.time), (100, REPLY_UDP, 0.125))
        self.assertIsNone(trying.parsed().toAddress.tag)
        self.assertEqual(t.state, Transaction.PROCEEDING)

    def test_noTryingIfTUAnswers(self) -> None:
        """A provisional response from the TU within the delay replaces the 100."""
        t = self.newTransaction(request())
        t.respond(180)
        self.h.advance(1)
        [ringing] = self.h.sent()
        self.assertEqual((ringing.message.code, ringing.time), (180, 0))
        self.assertEqual(ringing.parsed().toAddress.tag, t.toTag)
        self.assertEqual(t.state, Transaction.PROCEEDING)

    def test_noTryingTimerIfTUAnswersAtOnce(self) -> None:
        """A TU answering inside handleRequest (a proxy's 100) leaves no 100 Trying timer behind."""
        self.user.onRequest = lambda r, t: t.respond(100)
        t = self.newTransaction(request())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.h.advance(1)
        self.assertEqual([(s.message.code, s.time) for s in self.h.sent()], [(100, 0)])
        self.assertEqual(t.state, Transaction.PROCEEDING)

    def test_noTryingAfterTUFailure(self) -> None:
        """A TU raising in handleRequest: 500 at once, no 100 Trying after it."""
        def fail(r: Any, t: Any) -> None:
            raise RuntimeError("boom")
        self.user.onRequest = fail
        self.newTransaction(request())
        self.flushLoggedErrors(RuntimeError)
        self.h.advance(0.24)  # (timer G resends the 500 at T1)
        self.assertEqual([(s.message.code, s.time) for s in self.h.sent()], [(500, 0)])

    def test_retransmissionsAbsorbed(self) -> None:
        """N retransmissions: the TU sees the INVITE once, each gets the last provisional again."""
        t = self.newTransaction(request())
        t.respond(180)
        for when in (0.5, 1.5, 3.5):
            self.h.advanceTo(when)
            self.h.receive(request())
        self.assertEqual(len(self.user.requests), 1)
        sent = self.h.sent()
        self.assertEqual([s.message.code for s in sent], [180] * 4)
        self.assertEqual(times(sent), [0, 0.5, 1.5, 3.5])
        self.assertEqual(len({s.data for s in sent}), 1)
        self.assertEqual(self.layer.counters.get("transactions.retransmissions_absorbed"), 3)

    def test_retransmissionBeforeAnyResponse(self) -> None:
        """A retransmission before the 100 timer gets a 100 at once, and only one 100 is sent."""
        self.newTransaction(request())
        self.h.advanceTo(0.0625)
        self.h.receive(request())
        self.h.advance(1)
        self.assertEqual([(s.message.code, s.time) for s in self.h.sent()], [(100, 0.0625)])
        self.assertEqual(len(self.user.requests), 1)

    def test_ackInProceedingDropped(self) -> None:
        """An ACK (same branch) before any final response is absorbed, not given to the TU."""
        self.newTransaction(request())
        self.h.receive(request("ACK", cseqMethod="ACK"))
        self.assertEqual(self.user.acks, [])


class InviteServerCompletedTests(ServerTestCase):
    """Completed (non-2xx): timer G doubling to T2, timer H, Confirmed and timer I."""

    #: G retransmissions after the final response at 0: T1, then doubling, capped at T2, until H (64*T1 = 16 s).
    G_TIMES = [0.25, 0.75, 1.75, 3.75, 5.75, 7.75, 9.75, 11.75, 13.75, 15.75]

    def test_removedCallbacksNotCalled(self) -> None:
        """Callbacks taken back with removeCallbacks are not called; the others still are."""
        t = self.newTransaction(request())
        removed: list[Any] = []
        def gone(*args: Any) -> None:
            removed.append(args)
        t.onFailure(gone)
        t.onCancel(gone)
        t.removeCallbacks(gone)
        t.respond(486)
        self.h.advanceTo(SIXTY_FOUR_T1)
        self.assertEqual(self.failures, [(t, "timeout", 16.0)])
        self.assertEqual(removed, [])

    def test_timerGAndH(self) -> None:
        """Over UDP the final response is retransmitted on timer G until timer H reports a failure."""
        t = self.newTransaction(request())
        t.respond(486)
        self.assertEqual(t.state, Transaction.COMPLETED)
        self.h.advanceTo(15.9)
        sent = self.h.sent()
        self.assertEqual([s.message.code for s in sent], [486] * 11)
        self.assertEqual(times(sent), [0.0] + self.G_TIMES)
        self.assertEqual([s.destination for s in sent], [REPLY_UDP] * 11)
        intervals = [b - a for a, b in zip([0.0] + self.G_TIMES, self.G_TIMES)]
        self.assertEqual(intervals, [T1, 2 * T1, 4 * T1, T2, T2, T2, T2, T2, T2, T2])
        self.assertEqual(self.failures, [])
        self.h.advance(16.0 - 15.9 - 0.0001)
        self.assertEqual(t.state, Transaction.COMPLETED)
        self.h.advanceTo(SIXTY_FOUR_T1)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual(self.failures, [(t, "timeout", 16.0)])
        self.assertEqual(t.failure, "timeout")
        self.assertEqual(self.layer.counters.get("transactions.timer_h"), 1)
        self.assertEqual(len(self.h.sent()), 11)
        self.assertGone()

    def test_retransmissionResendsFinal(self) -> None:
        """An INVITE retransmission in Completed gets the final response again."""
        t = self.newTransaction(request())
        t.respond(603)
        self.h.advanceTo(0.125)
        self.h.receive(request())
        self.assertEqual([(s.message.code, s.time) for s in self.h.sent()], [(603, 0), (603, 0.125)])
        self.assertEqual(len(self.user.requests), 1)

    def test_ackConfirmsAndTimerI(self) -> None:
        """The ACK stops G and H; Confirmed lasts T4 (timer I) and absorbs ACKs and INVITEs."""
        t = self.newTransaction(request())
        t.respond(404)
        self.h.advanceTo(1.0)
        ackTag = self.h.sent()[0].parsed().toAddress.tag
        self.h.receive(request("ACK", cseqMethod="ACK", toTag=ackTag))
        self.assertEqual(t.state, Transaction.CONFIRMED)
        self.assertEqual(self.user.acks, [])
        sentBefore = len(self.h.sent())
        self.assertEqual(sentBefore, 3)  # at 0, 0.25, 0.75
        self.h.advanceTo(2.0)
        self.h.receive(request("ACK", cseqMethod="ACK", toTag=ackTag))
        self.h.receive(request())
        self.assertEqual(self.user.acks, [])
        self.assertEqual(len(self.user.requests), 1)
        self.h.advanceTo(1.0 + T4 - 0.001)
        self.assertEqual(t.state, Transaction.CONFIRMED)
        self.h.advanceTo(1.0 + T4)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual(len(self.h.sent()), sentBefore)
        self.assertEqual(self.failures, [])
        self.assertEqual(self.layer.counters.get("transactions.acks_absorbed"), 2)
        self.assertGone()

    def test_tcpNoRetransmissionsTimerHStill(self) -> None:
        """Over TCP there is no timer G, but timer H (64*T1) still runs."""
        t = self.newTransaction(request(transport="TCP"), PEER_TCP)
        t.respond(500)
        self.h.advanceTo(15.99)
        self.assertEqual([(s.message.code, s.destination) for s in self.h.sent()], [(500, PEER_TCP)])
        self.assertEqual(self.failures, [])
        self.h.advanceTo(16.0)
        self.assertEqual(self.failures, [(t, "timeout", 16.0)])
        self.assertGone()

    def test_tcpAckTerminatesAtOnce(self) -> None:
        """Over TCP timer I is zero: the ACK terminates the transaction."""
        t = self.newTransaction(request(transport="TCP"), PEER_TCP)
        t.respond(480)
        self.h.receive(request("ACK", cseqMethod="ACK", transport="TCP", toTag=t.toTag), PEER_TCP)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual(self.user.acks, [])
        self.assertGone()

    def test_responsesAfterFinalIgnored(self) -> None:
        """Nothing the TU sends after a non-2xx final goes out."""
        t = self.newTransaction(request())
        t.respond(486)
        t.respond(180)
        t.respond(200)
        self.assertEqual([s.message.code for s in self.h.sent()], [486])
        self.assertEqual(t.state, Transaction.COMPLETED)


class InviteServerAcceptedTests(ServerTestCase):
    """Accepted (RFC 6026): timer L, absorbed INVITEs, TU 2xx retransmissions, ACK to the TU."""

    def test_timerL(self) -> None:
        """Accepted lasts 64*T1; INVITE retransmissions are absorbed without an answer."""
        t = self.newTransaction(request())
        t.respond(200)
        self.assertEqual(t.state, Transaction.ACCEPTED)
        for when in (0.5, 1.5, 3.5):
            self.h.advanceTo(when)
            self.h.receive(request())
        self.assertEqual(len(self.user.requests), 1)
        self.assertEqual([s.message.code for s in self.h.sent()], [200])
        self.h.advanceTo(15.99)
        self.assertEqual(t.state, Transaction.ACCEPTED)
        self.h.advanceTo(16.0)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual(self.failures, [])
        self.assertEqual([s.message.code for s in self.h.sent()], [200])
        self.assertGone()

    def test_timerLOverTCP(self) -> None:
        """Timer L runs over reliable transports too."""
        t = self.newTransaction(request(transport="TCP"), PEER_TCP)
        t.respond(200)
        self.h.advanceTo(15.99)
        self.assertEqual(t.state, Transaction.ACCEPTED)
        self.h.advanceTo(16.0)
        self.assertGone()

    def test_tuRetransmits2xx(self) -> None:
        """The TU's 2xx retransmissions pass through in Accepted; other responses do not."""
        t = self.newTransaction(request())
        first = t.respond(200)
        self.h.advanceTo(0.25)
        t.respond(first)
        t.respond(486)
        t.respond(183)
        self.assertEqual([(s.message.code, s.time) for s in self.h.sent()], [(200, 0), (200, 0.25)])

    def test_ackFor2xxToTU(self) -> None:
        """The end-to-end ACK for a 2xx (new branch) goes to the TU, once per ACK, with no transaction."""
        t = self.newTransaction(request())
        t.respond(200)
        ack = request("ACK", branch="z9hG4bKnewack1", cseqMethod="ACK", toTag=t.toTag)
        self.h.receive(ack)
        self.h.receive(ack)
        self.assertEqual(len(self.user.acks), 2)
        self.assertEqual(self.user.acks[0][0].method, "ACK")
        self.assertEqual(self.user.acks[0][1:], (PEER_UDP, None))
        self.assertEqual(t.state, Transaction.ACCEPTED)

    def test_ackSameBranchInAcceptedToTU(self) -> None:
        """An ACK matching the Accepted transaction is still the TU's."""
        t = self.newTransaction(request())
        t.respond(200)
        self.h.receive(request("ACK", cseqMethod="ACK", toTag=t.toTag))
        self.assertEqual([a[2] for a in self.user.acks], [t])
        self.assertEqual(t.state, Transaction.ACCEPTED)

    def test_provisionalThenAccepted(self) -> None:
        """Proceeding -> Accepted after provisionals: the 100 timer never fires."""
        t = self.newTransaction(request())
        t.respond(183)
        t.respond(200)
        self.h.advance(1)
        self.assertEqual([s.message.code for s in self.h.sent()], [183, 200])


class NonInviteServerTests(ServerTestCase):
    """Trying, Proceeding, Completed and timer J (RFC 3261 §17.2.2)."""

    def test_tryingDiscardsRetransmissions(self) -> None:
        """In Trying a retransmission is discarded: nothing is sent, the TU sees the request once."""
        t = self.newTransaction(request("OPTIONS"))
        self.assertIsInstance(t, NonInviteServerTransaction)
        self.assertEqual(t.state, Transaction.TRYING)
        for when in (0.25, 0.75, 1.75):
            self.h.advanceTo(when)
            self.h.receive(request("OPTIONS"))
        self.assertEqual(self.h.sent(), [])
        self.assertEqual(len(self.user.requests), 1)
        self.assertEqual(t.state, Transaction.TRYING)

    def test_proceeding(self) -> None:
        """A provisional moves to Proceeding; retransmissions get it again."""
        t = self.newTransaction(request("REGISTER", uri="sip:example.com"))
        t.respond(100)
        self.assertEqual(t.state, Transaction.PROCEEDING)
        self.h.advanceTo(0.5)
        self.h.receive(request("REGISTER", uri="sip:example.com"))
        self.assertEqual([(s.message.code, s.time) for s in self.h.sent()], [(100, 0), (100, 0.5)])
        t.respond(200)
        self.assertEqual(t.state, Transaction.COMPLETED)

    def test_statelessFinal(self) -> None:
        """
        respondStatelessly (RFC 3261 §8.2.7): the response goes out, no
        state or timer is kept, and a retransmission reaches the TU afresh.
        """
        t = self.newTransaction(request("REGISTER", uri="sip:example.com"))
        t.respondStatelessly(t.createResponse(401))
        self.assertEqual([s.message.code for s in self.h.sent()], [401])
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertGone()
        self.h.advanceTo(0.5)
        self.h.receive(request("REGISTER", uri="sip:example.com"))
        self.assertEqual(len(self.user.requests), 2)
        self.assertIsNot(self.user.requests[1][1], t)
        self.assertRaises(ValueError, self.user.requests[1][1].respondStatelessly,
                          self.user.requests[1][1].createResponse(100))

    def test_statelessAfterFinalIgnored(self) -> None:
        t = self.newTransaction(request("OPTIONS"))
        late = t.createResponse(500)
        t.respond(200)
        t.respondStatelessly(late)
        self.assertEqual([s.message.code for s in self.h.sent()], [200])
        self.assertEqual(t.state, Transaction.COMPLETED)

    def test_completedTimerJ(self) -> None:
        """Completed resends the final to retransmissions and lasts 64*T1 over UDP."""
        t = self.newTransaction(request("BYE", toTag="x1"))
        t.respond(200)
        self.assertEqual(t.state, Transaction.COMPLETED)
        for when in (0.25, 0.75, 15.75):
            self.h.advanceTo(when)
            self.h.receive(request("BYE", toTag="x1"))
        self.assertEqual(times(self.h.sent()), [0, 0.25, 0.75, 15.75])
        self.assertEqual({s.data for s in self.h.sent()}, {self.h.sent()[0].data})
        self.h.advanceTo(15.99)
        self.assertEqual(t.state, Transaction.COMPLETED)
        self.h.advanceTo(16.0)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual(len(self.user.requests), 1)
        self.assertEqual(self.failures, [])
        self.assertGone()

    def test_completedOverTCPTerminatesAtOnce(self) -> None:
        """Timer J is zero over TCP."""
        t = self.newTransaction(request("OPTIONS", transport="TCP"), PEER_TCP)
        t.respond(200)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual([(s.message.code, s.destination) for s in self.h.sent()], [(200, PEER_TCP)])
        self.assertGone()

    def test_responsesAfterFinalIgnored(self) -> None:
        t = self.newTransaction(request("OPTIONS"))
        t.respond(200)
        t.respond(500)
        t.respond(180)
        self.assertEqual([s.message.code for s in self.h.sent()], [200])

    def test_respondWithHeadersAndResponse(self) -> None:
        """C{respond} takes a code with headers, or a response from C{createResponse}."""
        t = self.newTransaction(request("OPTIONS"))
        response = t.respond(405, headers=[("Allow", "INVITE, ACK")])
        self.assertIsInstance(response, Response)
        parsed = self.h.sent()[0].parsed()
        self.assertEqual((parsed.code, parsed.getHeader("Allow")), (405, "INVITE, ACK"))  # type: ignore[union-attr]
        self.assertEqual(parsed.toAddress.tag, t.toTag)
        self.assertEqual(parsed.topVia.branch, BRANCH)
        self.assertEqual(parsed.cseq.method, "OPTIONS")


class ServerTransportErrorTests(ServerTestCase):
    """A response the transport cannot send terminates the transaction and reports it."""

    def test_finalResponseFails(self) -> None:
        self.h.transports.failSendsTo(REPLY_UDP, "network unreachable")
        t = self.newTransaction(request("OPTIONS"))
        t.respond(200)
        self.assertEqual(t.state, Transaction.COMPLETED)
        self.h.advance(0)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual(self.failures, [(t, "network unreachable", 0)])
        self.assertEqual(self.layer.counters.get("transactions.transport_errors"), 1)
        self.assertGone()

    def test_inviteFailsDuringRetransmissions(self) -> None:
        """A failure of a timer G retransmission ends the transaction, reported once."""
        t = self.newTransaction(request())
        t.respond(486)
        self.h.transports.failSendsTo(REPLY_UDP)
        self.h.advanceTo(0.25)
        self.assertEqual(self.failures, [(t, "connection refused", 0.25)])
        self.h.advance(20)
        self.assertEqual(len(self.failures), 1)
        self.assertEqual(len(self.h.sent()), 2)
        self.assertGone()

    def test_synchronousFailure(self) -> None:
        """A transport reporting at once leaves no timer behind."""
        h = Harness(syncErrors=True)
        h.transports.failSendsTo(REPLY_UDP)
        h.receive(request())
        [(_, t)] = h.user.requests
        t.respond(486)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual(t.failure, "connection refused")
        self.assertTrue(h.empty())

    def test_withoutOnErrorSupport(self) -> None:
        """A transport whose C{sendResponse} takes no C{onError} is still usable."""
        h = Harness()
        sent: list[Any] = []

        def sendResponse(response: Any, source: Any = None) -> None:
            sent.append(response)

        h.transports.sendResponse = sendResponse  # type: ignore[method-assign]
        from voipgw.transaction import TransactionLayer

        layer = TransactionLayer(h.transports, h.clock, TIMERS, user=h.user)
        self.assertFalse(layer.responseErrors)
        self.assertTrue(h.layer.responseErrors)
        h.receive(request("OPTIONS"))
        h.user.requests[0][1].respond(200)
        self.assertEqual([r.code for r in sent], [200])


class CancelTests(ServerTestCase):
    """L{ServerTransaction.cancel}: 487 by default, or the application's callbacks."""

    def test_defaultAnswers487(self) -> None:
        t = self.newTransaction(request())
        t.cancel(None)  # type: ignore[arg-type]
        self.assertTrue(t.cancelled)
        self.assertEqual(t.state, Transaction.COMPLETED)
        self.assertEqual([s.message.code for s in self.h.sent()], [487])
        t.cancel(None)  # type: ignore[arg-type]
        self.assertEqual(len(self.h.sent()), 1)

    def test_callbacks(self) -> None:
        t = self.newTransaction(request())
        seen: list[Any] = []
        t.onCancel(seen.append)
        t.onCancel(seen.append)
        marker: Any = object()
        t.cancel(marker)
        self.assertEqual(seen, [marker, marker])
        self.assertEqual(self.h.sent(), [])
        self.assertEqual(t.state, Transaction.PROCEEDING)
        self.assertRaises(RuntimeError, t.onCancel, seen.append)

    def test_afterFinalNoEffect(self) -> None:
        t = self.newTransaction(request())
        t.respond(200)
        t.cancel(None)  # type: ignore[arg-type]
        self.assertEqual([s.message.code for s in self.h.sent()], [200])

    def test_isServerTransaction(self) -> None:
        t = self.newTransaction(request())
        self.assertIsInstance(t, ServerTransaction)
        self.assertEqual((t.method, t.source, t.reliable), ("INVITE", PEER_UDP, False))
