# -*- test-case-name: tests.test_transaction_layer -*-
"""
L{TransactionLayer}: dispatch of received messages, CANCEL, ACK, RFC 2543
matching, stray responses, application errors, client requests, the
stateless path, and nothing left behind.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from voipgw.interfaces import IMessageReceiver
from voipgw.sip.message import Request, Response, parseMessage, responseTo
from voipgw.testing import FakeTransportService
from voipgw.transaction import TransactionLayer
from voipgw.transaction.base import Transaction
from voipgw.transport.address import Address

from tests.test_transaction_support import (
    BRANCH, NEXT_HOP_TCP, NEXT_HOP_UDP, PEER_TCP, PEER_UDP, T4, TIMERS, ClientUser, Harness, ServerUser,
    outgoing, request, responseBytes,
)

REPLY_UDP = Address("udp", "198.51.100.7", 5060)


class LayerTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.clock = self.h.clock
        self.layer = self.h.layer
        self.user = self.h.user

    def sentCodes(self) -> list[tuple[int, str]]:
        return [
            (s.message.code, s.message.cseq.method)  # type: ignore[union-attr]
            for s in self.h.sent() if isinstance(s.message, Response)
        ]

    def assertGone(self) -> None:
        self.assertEqual(self.layer.server, {})
        self.assertEqual(self.layer.client, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])


class DispatchTests(LayerTestCase):
    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IMessageReceiver, self.layer))
        self.assertIs(self.h.transports.receiver, self.layer)

    def test_newRequestToTU(self) -> None:
        """A new request reaches C{handleRequest} with its server transaction, keyed by branch."""
        message = self.h.receive(request("OPTIONS"))
        [(seen, transaction)] = self.user.requests
        self.assertIs(seen, message)
        self.assertIs(transaction.request, message)
        self.assertEqual(transaction.source, PEER_UDP)
        self.assertEqual(list(self.layer.server.values()), [transaction])
        self.assertEqual(self.layer.counters.snapshot("transactions.server"), {
            "transactions.server": 1, "transactions.server_created": 1,
        })

    def test_branchSentByMethodMatching(self) -> None:
        """§17.2.3: same branch with another sent-by or method is another transaction."""
        self.h.receive(request("OPTIONS"))
        self.h.receive(request("OPTIONS", sentBy="198.51.100.8:5060"))
        self.h.receive(request("INFO", cseq=314160))
        self.h.receive(request("OPTIONS", branch=BRANCH + "x"))
        self.h.receive(request("OPTIONS"))
        self.assertEqual(len(self.user.requests), 4)
        self.assertEqual(len(self.layer.server), 4)

    def test_applicationException500(self) -> None:
        """An exception from the TU is logged and answered with 500."""
        def fail(request: Any, transaction: Any) -> None:
            raise RuntimeError("boom")

        self.user.onRequest = fail
        self.h.receive(request())
        self.h.receive(request("OPTIONS"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertEqual(self.sentCodes(), [(500, "INVITE"), (500, "OPTIONS")])
        self.assertEqual(self.layer.counters.get("application_errors"), 2)
        self.h.receive(request())
        self.assertEqual(self.sentCodes()[-1], (500, "INVITE"))
        self.assertEqual(len(self.user.requests), 2)

    def test_exceptionAfterFinalResponse(self) -> None:
        """An exception after the TU answered sends nothing more."""
        def answerThenFail(request: Any, transaction: Any) -> None:
            transaction.respond(404)
            raise RuntimeError("late")

        self.user.onRequest = answerThenFail
        self.h.receive(request("OPTIONS"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.sentCodes(), [(404, "OPTIONS")])

    def test_noUser503(self) -> None:
        layer = TransactionLayer(self.h.transports, self.clock, TIMERS)
        self.h.receive(request("OPTIONS"))
        self.assertEqual(self.sentCodes(), [(503, "OPTIONS")])
        self.h.receive(request("ACK", branch="z9hG4bKother", cseqMethod="ACK"))
        self.h.receive(responseBytes(200, self.h.sent()[0].parsed()), NEXT_HOP_UDP)  # type: ignore[arg-type]
        self.assertEqual(layer.counters.get("transactions.stray_responses"), 1)

    def test_unusableMessageCounted(self) -> None:
        """A message whose matching headers cannot be parsed is counted and dropped."""
        broken = Request("OPTIONS", "sip:bob@example.com", [("From", "<sip:a@b>;tag=1")])
        self.layer.receiveMessage(broken, PEER_UDP)
        self.assertEqual(self.layer.counters.get("parse_errors"), 1)
        self.assertEqual((self.user.requests, self.h.sent()), ([], []))


class AckTests(LayerTestCase):
    def test_ackForNon2xxAbsorbed(self) -> None:
        self.h.receive(request())
        transaction = self.user.requests[0][1]
        transaction.respond(486)
        self.h.receive(request("ACK", cseqMethod="ACK", toTag=transaction.toTag))
        self.assertEqual(self.user.acks, [])
        self.assertEqual(transaction.state, Transaction.CONFIRMED)

    def test_ackFor2xxToTU(self) -> None:
        self.h.receive(request())
        transaction = self.user.requests[0][1]
        transaction.respond(200)
        self.h.receive(request("ACK", branch="z9hG4bKack2xx", cseqMethod="ACK", toTag=transaction.toTag))
        [(ack, source, matched)] = self.user.acks
        self.assertEqual((ack.method, source, matched), ("ACK", PEER_UDP, None))
        self.assertEqual(self.layer.counters.get("transactions.acks_absorbed"), 0)

    def test_strayAckToTU(self) -> None:
        """An ACK matching nothing goes to the TU (a proxy forwards it statelessly)."""
        self.h.receive(request("ACK", cseqMethod="ACK", toTag="zz"))
        self.assertEqual([(a.method, t) for a, _, t in self.user.acks], [("ACK", None)])
        self.assertEqual(self.layer.server, {})


class CancelTests(LayerTestCase):
    """RFC 3261 §9.2."""

    def test_cancel487(self) -> None:
        """200 for the CANCEL with the INVITE's To tag, 487 for the INVITE, ACK absorbed, all gone."""
        self.h.receive(request())
        invite = self.user.requests[0][1]
        invite.respond(180)
        self.h.advanceTo(1.0)
        self.h.receive(request("CANCEL"))
        self.assertEqual(len(self.user.requests), 1)
        self.assertEqual(self.sentCodes(), [(180, "INVITE"), (200, "CANCEL"), (487, "INVITE")])
        tags = {s.parsed().toAddress.tag for s in self.h.sent()}
        self.assertEqual(tags, {invite.toTag})
        self.assertTrue(invite.cancelled)
        self.assertEqual(invite.state, Transaction.COMPLETED)
        self.h.receive(request("CANCEL"))
        self.assertEqual(self.sentCodes()[-1], (200, "CANCEL"))
        self.assertEqual(len(self.sentCodes()), 4)
        self.h.receive(request("ACK", cseqMethod="ACK", toTag=invite.toTag))
        self.assertEqual(self.user.acks, [])
        self.h.advanceTo(1.0 + 16.0)
        self.assertGone()

    def test_onCancelCallback(self) -> None:
        """With onCancel the application decides; the CANCEL is still answered 200."""
        cancels: list[Any] = []

        def register(request: Any, transaction: Any) -> None:
            transaction.onCancel(cancels.append)

        self.user.onRequest = register
        self.h.receive(request())
        self.h.receive(request("CANCEL"))
        self.h.receive(request("CANCEL"))
        self.assertEqual([c.method for c in cancels], ["CANCEL"])
        self.assertEqual(self.sentCodes(), [(200, "CANCEL"), (200, "CANCEL")])
        invite = self.user.requests[0][1]
        self.assertEqual(invite.state, Transaction.PROCEEDING)
        invite.respond(487)
        self.assertEqual(self.sentCodes()[-1], (487, "INVITE"))

    def test_unknown481(self) -> None:
        self.h.receive(request("CANCEL"))
        self.assertEqual(self.sentCodes(), [(481, "CANCEL")])
        self.assertEqual(self.user.requests, [])
        self.assertEqual(self.layer.counters.get("transactions.cancel_unmatched"), 1)
        self.h.advanceTo(16.0)
        self.assertGone()

    def test_cancelNonInvite(self) -> None:
        """A CANCEL matching a non-INVITE transaction gets 200 and has no effect (§9.2)."""
        self.h.receive(request("OPTIONS"))
        self.h.receive(request("CANCEL"))
        self.assertEqual(self.sentCodes(), [(200, "CANCEL")])
        self.assertEqual(self.user.requests[0][1].state, Transaction.TRYING)
        self.assertEqual(self.layer.counters.get("transactions.cancel_unmatched"), 0)

    def test_cancelNeedsSameSentBy(self) -> None:
        self.h.receive(request())
        self.h.receive(request("CANCEL", sentBy="198.51.100.8:5060"))
        self.assertEqual(self.sentCodes()[-1], (481, "CANCEL"))

    def test_cancelAfterFinal(self) -> None:
        """A CANCEL after the final response gets 200 and changes nothing."""
        self.h.receive(request())
        invite = self.user.requests[0][1]
        invite.respond(200)
        self.h.receive(request("CANCEL"))
        self.assertEqual(self.sentCodes(), [(200, "INVITE"), (200, "CANCEL")])
        self.assertEqual(invite.state, Transaction.ACCEPTED)
        self.assertFalse(invite.cancelled)

    def test_cancelOverTCP(self) -> None:
        self.h.receive(request(transport="TCP"), PEER_TCP)
        self.h.receive(request("CANCEL", transport="TCP"), PEER_TCP)
        self.assertEqual(self.sentCodes(), [(200, "CANCEL"), (487, "INVITE")])
        self.assertEqual({s.destination for s in self.h.sent()}, {PEER_TCP})
        invite = self.user.requests[0][1]
        self.h.receive(request("ACK", cseqMethod="ACK", transport="TCP", toTag=invite.toTag), PEER_TCP)
        self.assertGone()


class RFC2543Tests(LayerTestCase):
    """§17.2.3 fallback: no magic cookie in the branch."""

    def test_noBranch(self) -> None:
        self.h.receive(request(branch=None))
        self.h.receive(request(branch=None))
        self.assertEqual(len(self.user.requests), 1)
        transaction = self.user.requests[0][1]
        transaction.respond(486)
        self.h.receive(request(branch=None))
        # The retransmission before any response got an immediate 100.
        self.assertEqual(self.sentCodes(), [(100, "INVITE"), (486, "INVITE"), (486, "INVITE")])
        self.h.receive(request(branch=None, cseq=314160))
        self.h.receive(request(branch=None, fromTag="other"))
        self.h.receive(request(branch=None, uri="sip:carol@example.com"))
        self.assertEqual(len(self.user.requests), 4)

    def test_ackByToTag(self) -> None:
        """The ACK matches when its To tag is that of the response; otherwise it is the TU's."""
        self.h.receive(request(branch="1234"))
        transaction = self.user.requests[0][1]
        transaction.respond(404)
        self.h.receive(request("ACK", branch="1234", cseqMethod="ACK", toTag="someoneelse"))
        self.assertEqual(len(self.user.acks), 1)
        self.assertEqual(transaction.state, Transaction.COMPLETED)
        self.h.receive(request("ACK", branch="1234", cseqMethod="ACK", toTag=transaction.toTag))
        self.assertEqual(len(self.user.acks), 1)
        self.assertEqual(transaction.state, Transaction.CONFIRMED)
        self.h.advanceTo(T4)
        self.assertGone()

    def test_cancel(self) -> None:
        self.h.receive(request(branch=None))
        self.h.receive(request("CANCEL", branch=None))
        self.assertEqual(self.sentCodes(), [(200, "CANCEL"), (487, "INVITE")])


class ClientDispatchTests(LayerTestCase):
    def test_requestAddsVia(self) -> None:
        """C{request} pushes a Via from the listener with a fresh cookie branch and rport."""
        tu = ClientUser(self.clock)
        first = self.layer.request(outgoing("OPTIONS"), NEXT_HOP_UDP, tu)
        second = self.layer.request(outgoing("OPTIONS"), NEXT_HOP_TCP, tu)
        via = first.request.topVia
        self.assertEqual((via.transport, via.host, via.port), ("UDP", "192.0.2.1", 5060))
        self.assertTrue(via.isRFC3261Branch)
        self.assertEqual(via.rport, "")
        self.assertEqual(second.request.topVia.transport, "TCP")
        self.assertNotEqual(via.branch, second.request.topVia.branch)
        self.assertEqual(len(first.request.vias), 1)
        self.assertEqual(len(self.layer.client), 2)

    def test_requestKeepsVia(self) -> None:
        message = outgoing("OPTIONS")
        message.addHeader("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmine")
        t = self.layer.request(message, NEXT_HOP_UDP, ClientUser(self.clock), addVia=False)
        self.assertEqual(t.request.getHeaderValues("Via"), ["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmine"])

    def test_noListener(self) -> None:
        layer = TransactionLayer(FakeTransportService(self.clock, listen=[]), self.clock, TIMERS)
        self.assertRaises(ValueError, layer.request, outgoing("OPTIONS"), NEXT_HOP_UDP, ClientUser(self.clock))

    def test_strayResponses(self) -> None:
        """Unknown branch, or a known branch with another CSeq method: stray, to the TU."""
        tu = ClientUser(self.clock)
        t = self.layer.request(outgoing(), NEXT_HOP_UDP, tu)
        self.h.receive(responseBytes(200, t.request, branch="z9hG4bKunknown"), NEXT_HOP_UDP)
        self.h.receive(responseBytes(200, t.request, cseqMethod="CANCEL"), NEXT_HOP_UDP)
        self.assertEqual([(r.code, r.topVia.branch, s) for r, s in self.user.strays], [
            (200, "z9hG4bKunknown", NEXT_HOP_UDP), (200, t.request.topVia.branch, NEXT_HOP_UDP),
        ])
        self.assertEqual(tu.responses, [])
        self.assertEqual(t.state, Transaction.CALLING)
        self.assertEqual(self.layer.counters.get("transactions.stray_responses"), 2)


class StatelessTests(LayerTestCase):
    def test_response(self) -> None:
        message = parseMessage(request("OPTIONS", sentBy="10.0.0.1:5070;received=198.51.100.7"), datagram=True)
        self.layer.sendStateless(responseTo(message, 200))  # type: ignore[arg-type]
        [sent] = self.h.sent()
        self.assertEqual(sent.destination, Address("udp", "198.51.100.7", 5070))
        self.assertEqual(sent.message.code, 200)  # type: ignore[union-attr]
        self.assertEqual(self.layer.server, {})

    def test_request(self) -> None:
        ack = outgoing("ACK")
        ack.addHeader("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKack")
        self.layer.sendStateless(ack, NEXT_HOP_UDP)
        [sent] = self.h.sent()
        self.assertEqual((sent.message, sent.destination), (ack, NEXT_HOP_UDP))
        self.assertEqual(self.layer.client, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])


class NothingLeftBehindTests(LayerTestCase):
    def test_everyKindOfTransaction(self) -> None:
        """Server and client transactions of every kind end, and leave no timer."""
        answers = {"INVITE": 486, "OPTIONS": 200, "BYE": 200, "MESSAGE": 202}

        def answer(request: Any, transaction: Any) -> None:
            if request.method == "INFO":
                transaction.respond(200)
            elif request.method != "SUBSCRIBE":
                transaction.respond(answers[request.method])

        self.user.onRequest = answer
        for i, method in enumerate(answers):
            self.h.receive(request(method, branch=f"z9hG4bKs{i}", cseq=i + 1))
        self.h.receive(request("INVITE", branch="z9hG4bKacc", cseq=9, extra=()))
        self.user.requests[-1][1].respond(200)
        tu = ClientUser(self.clock)
        invite = self.layer.request(outgoing(), NEXT_HOP_UDP, tu)
        self.layer.request(outgoing("OPTIONS"), NEXT_HOP_UDP, tu)
        accepted = self.layer.request(outgoing(), NEXT_HOP_TCP, tu)
        self.h.receive(responseBytes(200, accepted.request), NEXT_HOP_TCP)
        self.h.receive(responseBytes(603, invite.request), NEXT_HOP_UDP)
        self.assertEqual(len(self.layer.server), 5)
        self.assertEqual(len(self.layer.client), 3)
        self.h.advanceTo(100.0)
        self.assertGone()
        self.assertEqual(len(tu.timeouts), 1)  # the unanswered OPTIONS

    def test_stopServiceCancelsTimers(self) -> None:
        self.layer.startService()
        self.h.receive(request())
        self.layer.request(outgoing(), NEXT_HOP_UDP, ClientUser(self.clock))
        self.layer.stopService()
        self.assertGone()


class UserErrorTests(LayerTestCase):
    """A transaction user's exception never reaches the transport or the clock."""

    def test_handleAckRaises(self) -> None:
        def fail(*args: Any) -> None:
            raise RuntimeError("ack")

        self.user.handleAck = fail  # type: ignore[method-assign]
        self.user.handleStrayResponse = fail  # type: ignore[method-assign]
        self.h.receive(request("ACK", cseqMethod="ACK", toTag="q"))
        self.h.receive(responseBytes(200, self.h.transports.receive(request("OPTIONS"), PEER_UDP)), NEXT_HOP_UDP)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertEqual(self.layer.counters.get("application_errors"), 2)

    def test_responseReceivedRaises(self) -> None:
        tu = ClientUser(self.clock)

        def fail(response: Any, transaction: Any) -> None:
            raise RuntimeError("response")

        tu.responseReceived = fail  # type: ignore[method-assign]
        t = self.layer.request(outgoing(), NEXT_HOP_UDP, tu)
        self.h.receive(responseBytes(404, t.request), NEXT_HOP_UDP)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(t.state, Transaction.COMPLETED)
        self.assertEqual(len(self.h.transports.requests("ACK")), 1)
        self.h.advanceTo(32.0)
        self.assertGone()

    def test_timedOutAndTransportFailedRaise(self) -> None:
        tu = ClientUser(self.clock)

        def fail(*args: Any) -> None:
            raise RuntimeError("user")

        tu.timedOut = fail  # type: ignore[method-assign]
        tu.transportFailed = fail  # type: ignore[method-assign]
        self.layer.request(outgoing("OPTIONS"), NEXT_HOP_UDP, tu)
        self.h.transports.failSendsTo(NEXT_HOP_TCP)
        self.layer.request(outgoing("OPTIONS"), NEXT_HOP_TCP, tu)
        self.h.advanceTo(16.0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertGone()

    def test_onCancelRaises487(self) -> None:
        """A failing onCancel callback: the INVITE is still answered 487."""
        def register(request: Any, transaction: Any) -> None:
            transaction.onCancel(lambda cancel: 1 / 0)

        self.user.onRequest = register
        self.h.receive(request())
        self.h.receive(request("CANCEL"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.sentCodes(), [(200, "CANCEL"), (487, "INVITE")])

    def test_onFailureRaises(self) -> None:
        self.h.receive(request())
        invite = self.user.requests[0][1]
        invite.onFailure(lambda t, reason: 1 / 0)
        invite.respond(486)
        self.h.advanceTo(16.0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(invite.failure, "timeout")
        self.assertGone()
