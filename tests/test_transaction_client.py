# -*- test-case-name: tests.test_transaction_client -*-
"""
Client transactions (RFC 3261 §17.1, RFC 6026 §7.2) through
L{TransactionLayer.request}, responses injected as wire bytes, on a
L{task.Clock} with T1 = 0.25 s, T2 = 2 s, T4 = 3 s.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from voipgw.sip.message import Request, parseMessage
from voipgw.transaction import (
    InviteClientTransaction, NonInviteClientTransaction, TimerSettings, buildAck, buildCancel,
)
from voipgw.transaction.base import Transaction
from voipgw.transport.address import Address

from tests.test_transaction_support import (
    NEXT_HOP_TCP, NEXT_HOP_UDP, T2, T4, ClientUser, Harness, outgoing, responseBytes, times,
)


class ClientTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.clock = self.h.clock
        self.layer = self.h.layer
        self.tu = ClientUser(self.clock)

    def start(self, method: str = "INVITE", destination: Address = NEXT_HOP_UDP, **kw: Any) -> Any:
        return self.layer.request(outgoing(method, **kw), destination, self.tu)

    def answer(self, transaction: Any, code: int, source: Address = NEXT_HOP_UDP, **kw: Any) -> None:
        self.h.receive(responseBytes(code, transaction.request, **kw), source)

    def requestsSent(self, method: str) -> list[Any]:
        return self.h.transports.requests(method)

    def assertGone(self) -> None:
        self.assertEqual(self.layer.server, {})
        self.assertEqual(self.layer.client, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])


class NonInviteClientTests(ClientTestCase):
    """Trying, Proceeding, Completed; timers E, F, K."""

    #: Timer E after the first send at 0: T1, doubling, capped at T2; F at 64*T1.
    E_TIMES = [0.25, 0.75, 1.75, 3.75, 5.75, 7.75, 9.75, 11.75, 13.75, 15.75]

    def test_timerEAndF(self) -> None:
        """Timer E doubles up to T2 in Trying; timer F reports one timeout at 64*T1."""
        t = self.start("OPTIONS")
        self.assertIsInstance(t, NonInviteClientTransaction)
        self.assertEqual(t.state, Transaction.TRYING)
        self.h.advanceTo(15.99)
        sent = self.requestsSent("OPTIONS")
        self.assertEqual(times(sent), [0.0] + self.E_TIMES)
        self.assertEqual({s.destination for s in sent}, {NEXT_HOP_UDP})
        self.assertEqual(len({s.data for s in sent}), 1)
        self.assertEqual(self.tu.timeouts, [])
        self.h.advanceTo(16.0)
        self.assertEqual(self.tu.timeouts, [(t, 16.0)])
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.h.advance(100)
        self.assertEqual(len(self.tu.timeouts), 1)
        self.assertEqual(len(self.requestsSent("OPTIONS")), 11)
        self.assertEqual((self.tu.responses, self.tu.failures), ([], []))
        self.assertGone()

    def test_lateTimerE(self) -> None:
        """A clock jump past timer F: the overdue E resends once, then F times out at once."""
        t = self.start("OPTIONS")
        self.clock.advance(100.0)  # one late turn, as a stalled reactor runs it
        self.assertEqual(len(self.requestsSent("OPTIONS")), 2)
        self.assertEqual(self.tu.timeouts, [(t, 100.0)])
        self.assertGone()

    def test_lateResponseIsStray(self) -> None:
        """After timer F a response matches nothing and is stray."""
        t = self.start("OPTIONS")
        self.h.advanceTo(16.0)
        self.answer(t, 200)
        self.assertEqual(self.tu.responses, [])
        self.assertEqual([r.code for r, _ in self.h.user.strays], [200])

    def test_proceedingTimerEAtT2(self) -> None:
        """After a provisional, timer E fires at its scheduled time and then every T2."""
        t = self.start("REGISTER")
        self.h.advanceTo(0.125)
        self.answer(t, 100)
        self.assertEqual(t.state, Transaction.PROCEEDING)
        self.assertEqual([(c, w) for c, _, w in self.tu.responses], [(100, 0.125)])
        self.h.advanceTo(15.99)
        expected = [0.0, 0.25] + [0.25 + k * T2 for k in range(1, 8)]
        self.assertEqual(times(self.requestsSent("REGISTER")), expected)
        self.h.advanceTo(16.0)
        self.assertEqual(self.tu.timeouts, [(t, 16.0)])
        self.assertGone()

    def test_completedTimerK(self) -> None:
        """A final response: the TU sees it once, retransmissions stop, K = T4 over UDP."""
        t = self.start("OPTIONS")
        self.h.advanceTo(0.5)
        self.answer(t, 100)
        self.answer(t, 100)
        self.answer(t, 200)
        self.assertEqual(t.state, Transaction.COMPLETED)
        self.assertEqual([(c, w) for c, _, w in self.tu.responses], [(100, 0.5), (100, 0.5), (200, 0.5)])
        self.h.advanceTo(0.5 + T4 - 0.01)
        self.answer(t, 200)
        self.answer(t, 404)
        self.assertEqual(len(self.tu.responses), 3)
        self.assertEqual(t.state, Transaction.COMPLETED)
        self.h.advanceTo(0.5 + T4)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual(times(self.requestsSent("OPTIONS")), [0.0, 0.25])
        self.assertEqual((self.tu.timeouts, self.tu.failures), ([], []))
        self.assertGone()

    def test_finalFromTrying(self) -> None:
        """Trying -> Completed directly on a final response."""
        t = self.start("BYE")
        self.answer(t, 481)
        self.assertEqual(t.state, Transaction.COMPLETED)
        self.assertEqual([c for c, _, _ in self.tu.responses], [481])
        self.h.advanceTo(T4)
        self.assertGone()

    def test_tcp(self) -> None:
        """Over TCP: no timer E, F still 64*T1; K = 0."""
        t = self.start("OPTIONS", NEXT_HOP_TCP)
        self.h.advanceTo(15.99)
        self.assertEqual(times(self.requestsSent("OPTIONS")), [0.0])
        self.assertEqual(self.requestsSent("OPTIONS")[0].message.topVia.transport, "TCP")
        self.h.advanceTo(16.0)
        self.assertEqual(self.tu.timeouts, [(t, 16.0)])
        self.assertGone()

        t = self.start("OPTIONS", NEXT_HOP_TCP)
        self.answer(t, 200, NEXT_HOP_TCP)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual([c for c, _, _ in self.tu.responses], [200])
        self.assertGone()


class InviteClientCallingTests(ClientTestCase):
    """Calling: timer A doubling without a cap, timer B."""

    A_TIMES = [0.25, 0.75, 1.75, 3.75, 7.75, 15.75]

    def test_timerAAndB(self) -> None:
        t = self.start()
        self.assertIsInstance(t, InviteClientTransaction)
        self.assertEqual(t.state, Transaction.CALLING)
        self.h.advanceTo(15.99)
        sent = self.requestsSent("INVITE")
        self.assertEqual(times(sent), [0.0] + self.A_TIMES)
        intervals = [b - a for a, b in zip([0.0] + self.A_TIMES, self.A_TIMES)]
        self.assertEqual(intervals, [0.25, 0.5, 1.0, 2.0, 4.0, 8.0])  # not capped at T2
        self.assertEqual(self.tu.timeouts, [])
        self.h.advanceTo(16.0)
        self.assertEqual(self.tu.timeouts, [(t, 16.0)])
        self.h.advance(100)
        self.assertEqual(len(self.tu.timeouts), 1)
        self.assertEqual(len(self.requestsSent("INVITE")), 7)
        self.assertGone()

    def test_lateTimerA(self) -> None:
        """A clock jump past timer B: the overdue A resends once, then B times out at once."""
        t = self.start()
        self.clock.advance(100.0)  # one late turn, as a stalled reactor runs it
        self.assertEqual(len(self.requestsSent("INVITE")), 2)
        self.assertEqual(self.tu.timeouts, [(t, 100.0)])
        self.assertGone()

    def test_tcpNoTimerA(self) -> None:
        t = self.start(destination=NEXT_HOP_TCP)
        self.h.advanceTo(16.0)
        self.assertEqual(times(self.requestsSent("INVITE")), [0.0])
        self.assertEqual(self.tu.timeouts, [(t, 16.0)])
        self.assertGone()


class InviteClientProceedingTests(ClientTestCase):
    """Proceeding: no retransmissions, no timer B."""

    def test_provisionalStopsAAndB(self) -> None:
        t = self.start()
        self.h.advanceTo(0.5)
        self.answer(t, 100)
        self.answer(t, 180)
        self.assertEqual(t.state, Transaction.PROCEEDING)
        self.h.advanceTo(120.0)
        self.assertEqual(times(self.requestsSent("INVITE")), [0.0, 0.25])
        self.assertEqual(self.tu.timeouts, [])
        self.assertEqual([(c, w) for c, _, w in self.tu.responses], [(100, 0.5), (180, 0.5)])
        self.assertEqual(t.state, Transaction.PROCEEDING)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.answer(t, 183)
        self.answer(t, 486)
        self.assertEqual([c for c, _, _ in self.tu.responses], [100, 180, 183, 486])
        self.assertEqual(t.state, Transaction.COMPLETED)


class InviteClientCompletedTests(ClientTestCase):
    """Completed: the hop-by-hop ACK, absorbed retransmissions, timer D."""

    def test_ackAndTimerD(self) -> None:
        """A non-2xx: ACK sent, TU told once, retransmissions re-ACKed, D = 32 s over UDP."""
        t = self.start()
        self.h.advanceTo(1.0)
        self.answer(t, 486)
        self.assertEqual(t.state, Transaction.COMPLETED)
        self.assertEqual([(c, w) for c, _, w in self.tu.responses], [(486, 1.0)])
        [ack] = self.requestsSent("ACK")
        self.assertEqual((ack.destination, ack.time), (NEXT_HOP_UDP, 1.0))
        for when in (2.0, 20.0):
            self.h.advanceTo(when)
            self.answer(t, 486)
        self.assertEqual(times(self.requestsSent("ACK")), [1.0, 2.0, 20.0])
        self.assertEqual(len({s.data for s in self.requestsSent("ACK")}), 1)
        self.assertEqual(len(self.tu.responses), 1)
        self.assertEqual(times(self.requestsSent("INVITE")), [0.0, 0.25, 0.75])
        self.h.advanceTo(1.0 + 32.0 - 0.01)
        self.assertEqual(t.state, Transaction.COMPLETED)
        self.h.advanceTo(1.0 + 32.0)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual((self.tu.timeouts, self.tu.failures), ([], []))
        self.assertGone()

    def test_timerDFollowsLargeT1(self) -> None:
        """With T1 = 1 s, D is 64 s: at least as long as the server's timer H."""
        h = Harness(TimerSettings(T1=1.0, T2=4.0, T4=5.0))
        tu = ClientUser(h.clock)
        t = h.layer.request(outgoing(), NEXT_HOP_UDP, tu)
        h.receive(responseBytes(503, t.request), NEXT_HOP_UDP)
        h.advanceTo(63.9)
        self.assertEqual(t.state, Transaction.COMPLETED)
        h.advanceTo(64.0)
        self.assertTrue(h.empty())

    def test_tcpTimerDZero(self) -> None:
        t = self.start(destination=NEXT_HOP_TCP)
        self.answer(t, 404, NEXT_HOP_TCP)
        self.assertEqual(t.state, Transaction.TERMINATED)
        [ack] = self.requestsSent("ACK")
        self.assertEqual(ack.destination, NEXT_HOP_TCP)
        self.assertEqual([c for c, _, _ in self.tu.responses], [404])
        self.assertGone()

    def test_ackContent(self) -> None:
        """
        The ACK (§17.1.1.3): the INVITE's Request-URI, one Via equal to its
        top Via (same branch), From, Call-ID, CSeq number with ACK, the To of
        the response with its tag, and the INVITE's Route set.
        """
        t = self.start(route=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"))
        self.answer(t, 407, toTag="9fxced76sl")
        invite = self.requestsSent("INVITE")[0].parsed()
        ack = self.requestsSent("ACK")[0].parsed()
        assert isinstance(ack, Request) and isinstance(invite, Request)
        self.assertEqual(ack.method, "ACK")
        self.assertEqual(str(ack.requestURI), "sip:carol@chicago.example.com")
        self.assertEqual(ack.getHeaderValues("Via"), [invite.getHeaderValues("Via")[0]])
        self.assertEqual(ack.topVia.branch, invite.topVia.branch)
        self.assertTrue(ack.topVia.isRFC3261Branch)
        self.assertEqual(ack.getHeader("From"), invite.getHeader("From"))
        self.assertEqual(ack.callId, invite.callId)
        self.assertEqual((ack.cseq.number, ack.cseq.method), (7, "ACK"))
        self.assertEqual(ack.getHeader("To"), "Carol <sip:carol@chicago.example.com>;tag=9fxced76sl")
        self.assertEqual(ack.getHeaderValues("Route"), ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"])
        self.assertEqual(ack.maxForwards, 70)
        self.assertEqual(ack.body, b"")

    def test_buildAckWithoutToInResponse(self) -> None:
        """L{buildAck} falls back to the request's To."""
        invite = outgoing()
        invite.addHeader("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKzz", first=True)
        response = parseMessage(responseBytes(500, invite), datagram=True)
        response.removeHeader("To")
        ack = buildAck(invite, response)  # type: ignore[arg-type]
        self.assertEqual(ack.getHeader("To"), invite.getHeader("To"))


class InviteClientAcceptedTests(ClientTestCase):
    """Accepted (RFC 6026): every 2xx to the TU, no ACK from the transaction, timer M."""

    def test_timerM(self) -> None:
        t = self.start()
        self.h.advanceTo(0.5)
        self.answer(t, 200)
        self.assertEqual(t.state, Transaction.ACCEPTED)
        self.h.advanceTo(1.0)
        self.answer(t, 200)
        self.answer(t, 200, toTag="otherfork")
        self.answer(t, 486)
        self.assertEqual([(c, w) for c, _, w in self.tu.responses], [(200, 0.5), (200, 1.0), (200, 1.0)])
        self.assertEqual(self.requestsSent("ACK"), [])
        self.h.advanceTo(0.5 + 16.0 - 0.01)
        self.assertEqual(t.state, Transaction.ACCEPTED)
        self.h.advanceTo(0.5 + 16.0)
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.assertEqual(times(self.requestsSent("INVITE")), [0.0, 0.25])
        self.assertEqual(self.tu.timeouts, [])
        self.assertGone()
        self.answer(t, 200)
        self.assertEqual(len(self.tu.responses), 3)
        self.assertEqual(len(self.h.user.strays), 1)

    def test_acceptedFromProceedingOverTCP(self) -> None:
        t = self.start(destination=NEXT_HOP_TCP)
        self.answer(t, 180, NEXT_HOP_TCP)
        self.answer(t, 200, NEXT_HOP_TCP)
        self.assertEqual(t.state, Transaction.ACCEPTED)
        self.h.advanceTo(15.99)
        self.assertEqual(t.state, Transaction.ACCEPTED)
        self.h.advanceTo(16.0)
        self.assertGone()


class ClientTransportErrorTests(ClientTestCase):
    """C{onError} from the transport: terminated, the TU told exactly once."""

    def test_asynchronousError(self) -> None:
        self.h.transports.failSendsTo(NEXT_HOP_UDP, "host unreachable")
        t = self.start()
        self.assertEqual(t.state, Transaction.CALLING)
        self.h.advance(0)
        self.assertEqual(self.tu.failures, [(t, "host unreachable", 0)])
        self.assertEqual(t.state, Transaction.TERMINATED)
        self.h.advance(100)
        self.assertEqual(len(self.tu.failures), 1)
        self.assertEqual(self.tu.timeouts, [])
        self.assertEqual(self.layer.counters.get("transactions.transport_errors"), 1)
        self.assertGone()

    def test_errorOnRetransmission(self) -> None:
        t = self.start("OPTIONS")
        self.h.advanceTo(0.5)
        self.h.transports.failSendsTo(NEXT_HOP_UDP)
        self.h.advanceTo(0.75)
        self.assertEqual(self.tu.failures, [(t, "connection refused", 0.75)])
        self.h.advance(100)
        self.assertEqual((len(self.tu.failures), self.tu.timeouts), (1, []))
        self.assertGone()

    def test_synchronousError(self) -> None:
        """A transport calling C{onError} inside C{send} leaves no timers behind."""
        for method in ("INVITE", "OPTIONS"):
            h = Harness(syncErrors=True)
            tu = ClientUser(h.clock)
            h.transports.failSendsTo(NEXT_HOP_UDP)
            t = h.layer.request(outgoing(method), NEXT_HOP_UDP, tu)
            self.assertEqual(t.state, Transaction.TERMINATED)
            self.assertEqual(tu.failures, [(t, "connection refused", 0)])
            self.assertTrue(h.empty(), method)
            h.advanceTo(100)
            self.assertEqual(tu.timeouts, [])


class CancelRequestTests(ClientTestCase):
    """L{buildCancel} and the CANCEL's own client transaction."""

    def test_cancelContent(self) -> None:
        t = self.start(route=("<sip:p1.example.com;lr>",))
        self.answer(t, 180)
        cancel = buildCancel(t.request)
        self.assertEqual(cancel.method, "CANCEL")
        self.assertEqual(str(cancel.requestURI), str(t.request.requestURI))
        self.assertEqual(cancel.getHeaderValues("Via"), [t.request.getHeaderValues("Via")[0]])
        for name in ("From", "To", "Call-ID"):
            self.assertEqual(cancel.getHeader(name), t.request.getHeader(name))
        self.assertEqual(str(cancel.cseq), "7 CANCEL")
        self.assertEqual(cancel.getHeaderValues("Route"), ["<sip:p1.example.com;lr>"])

        c = self.layer.request(cancel, NEXT_HOP_UDP, self.tu, addVia=False)
        self.assertIsInstance(c, NonInviteClientTransaction)
        self.assertEqual(c.request.topVia.branch, t.request.topVia.branch)
        self.assertEqual(len(self.layer.client), 2)
        self.answer(c, 200)
        self.assertEqual(c.state, Transaction.COMPLETED)
        self.assertEqual(t.state, Transaction.PROCEEDING)
        self.answer(t, 487)
        self.assertEqual([(c2, tr) for c2, tr, _ in self.tu.responses], [(180, t), (200, c), (487, t)])
        self.assertEqual(len(self.requestsSent("ACK")), 1)
        self.h.advanceTo(40)
        self.assertGone()
