# -*- test-case-name: tests.test_proxy -*-
"""
The stateful proxy (RFC 3261 §16) on task.Clock through the public test
harness: validation, Route processing, forwarding, responses, CANCEL,
timer C, stateless ACK and stray 2xx forwarding.
"""

from __future__ import annotations

import gc
import weakref

from twisted.trial import unittest

from voipgw.sip.message import Response, parseMessage, responseTo
from voipgw.testing.routing import CALLER, RoutingHarness
from voipgw.transaction.client import buildCancel
from voipgw.transaction.timers import TimerSettings
from voipgw.transport.address import Address

CALLEE = "sip:bob@192.0.2.20:5062"
CALLEE_ADDRESS = Address("udp", "192.0.2.20", 5062)


class ProxyTestCase(unittest.TestCase):
    section: dict[str, str] = {}
    timers = None

    def setUp(self) -> None:
        self.h = RoutingHarness(section=dict(self.section), timers=self.timers)
        self.addCleanup(self.h.stop)

    def finals(self) -> list[int]:
        """Final responses sent upstream (retransmissions of one response counted once)."""
        seen: list[object] = []
        for sent in self.h.finalResponses():
            if not any(sent.message is m for m in seen):
                seen.append(sent.message)
        return [m.code for m in seen]  # type: ignore[attr-defined]

    def assertClean(self) -> None:
        """No response context and, once the transaction timers ran out, no transaction left."""
        self.h.pump(self.h.transactions.timers.D + 10, 2)
        self.assertEqual(self.h.service.contexts, set())
        self.assertEqual(self.h.transactions.client, {})
        self.assertEqual(self.h.transactions.server, {})


class ValidationTests(ProxyTestCase):
    def test_maxForwardsZero(self) -> None:
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.invite("sip:bob@example.com", maxForwards=0))
        self.assertEqual(self.finals(), [483])
        self.assertEqual(self.h.requests("INVITE"), [])
        self.assertEqual(self.h.counters.get("routing.rejected.too_many_hops"), 1)

    def test_optionsToNodeWithMaxForwardsZero(self) -> None:
        """OPTIONS for the node with Max-Forwards 0 is answered by the node itself."""
        self.h.receive(self.h.request("OPTIONS", "sip:192.0.2.1:5060", maxForwards=0))
        self.assertEqual(self.finals(), [200])

    def test_maxForwardsDecremented(self) -> None:
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.invite("sip:bob@example.com", maxForwards=7))
        self.assertEqual(self.h.lastRequest("INVITE").message.getHeader("Max-Forwards"), "6")

    def test_maxForwardsMissing(self) -> None:
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.invite("sip:bob@example.com", maxForwards=None))
        self.assertEqual(self.h.lastRequest("INVITE").message.getHeader("Max-Forwards"), "70")

    def test_proxyRequire(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com", headers=(("Proxy-Require", "foo"),)))
        [response] = self.h.finalResponses()
        self.assertEqual(response.message.code, 420)
        self.assertEqual(response.message.getHeader("Unsupported"), "foo")

    def test_tryingSentAtOnce(self) -> None:
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.assertEqual(self.h.sent[0].message.code, 100)  # type: ignore[union-attr]

    def test_loopDetected(self) -> None:
        """The forwarded request coming back unchanged is a loop: 482."""
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.request("MESSAGE", "sip:bob@example.com", toURI="sip:bob@example.com"))
        forwarded = self.h.lastRequest("MESSAGE").parsed()
        forwarded.requestURI = parseMessage(self.h.request("MESSAGE", "sip:bob@example.com").encode()).requestURI  # type: ignore[union-attr]
        forwarded.setHeader("Max-Forwards", "70")
        self.h.clear()
        self.h.receive(forwarded, Address("udp", "192.0.2.1", 5060))
        self.assertEqual(self.finals(), [482])
        self.assertEqual(self.h.counters.get("routing.rejected.loop"), 1)

    def test_spiralAllowed(self) -> None:
        """Coming back with another Request-URI is a spiral: forwarded again."""
        self.h.register("bob@example.com", CALLEE)
        self.h.register("carol@example.com", "sip:carol@192.0.2.30:5060")
        self.h.receive(self.h.request("MESSAGE", "sip:bob@example.com"))
        forwarded = self.h.lastRequest("MESSAGE").parsed()
        self.h.clear()
        forwarded.requestURI = parseMessage(self.h.request("MESSAGE", "sip:carol@example.com").encode()).requestURI  # type: ignore[union-attr]
        self.h.receive(forwarded, Address("udp", "192.0.2.1", 5060))
        sent = self.h.lastRequest("MESSAGE")
        self.assertEqual(sent.destination, Address("udp", "192.0.2.30", 5060))
        self.assertEqual(len(sent.message.getHeaderValues("Via")), 3)

    def test_routeToSelfForever(self) -> None:
        """Route entries naming the node are all consumed; the Request-URI decides."""
        route = ", ".join(["<sip:192.0.2.1:5060;lr>"] * 20)
        self.h.receive(self.h.request("BYE", "sip:bob@example.com", toTag="x", headers=(("Route", route),)))
        self.assertEqual(self.finals(), [480])


class RoutingTests(ProxyTestCase):
    def test_looseRouting(self) -> None:
        """Our Route is popped; the next loose Route is the next hop; the Request-URI stays."""
        self.h.receive(self.h.request("BYE", "sip:bob@192.0.2.20:5062", toTag="t", headers=(
            ("Route", "<sip:192.0.2.1:5060;lr>, <sip:192.0.2.50:5070;lr>"),)))
        sent = self.h.lastRequest("BYE")
        self.assertEqual(sent.destination, Address("udp", "192.0.2.50", 5070))
        self.assertEqual(str(sent.message.requestURI), "sip:bob@192.0.2.20:5062")  # type: ignore[union-attr]
        self.assertEqual(sent.message.getHeaderValues("Route"), ["<sip:192.0.2.50:5070;lr>"])
        self.assertEqual(sent.message.getHeader("Record-Route"), None)

    def test_strictRouteDownstream(self) -> None:
        """§16.6 step 6: a strict next hop becomes the Request-URI; the old one goes last."""
        self.h.receive(self.h.request("BYE", "sip:bob@192.0.2.20:5062", toTag="t", headers=(
            ("Route", "<sip:192.0.2.1:5060;lr>, <sip:192.0.2.50:5070>, <sip:192.0.2.60;lr>"),)))
        sent = self.h.lastRequest("BYE")
        self.assertEqual(sent.destination, Address("udp", "192.0.2.50", 5070))
        self.assertEqual(str(sent.message.requestURI), "sip:192.0.2.50:5070")  # type: ignore[union-attr]
        self.assertEqual(sent.message.getHeaderValues("Route"), ["<sip:192.0.2.60;lr>", "<sip:bob@192.0.2.20:5062>"])

    def test_strictRouterUpstream(self) -> None:
        """§16.4: a Request-URI that is our Record-Route takes the last Route back."""
        self.h.receive(self.h.request("BYE", "sip:192.0.2.1:5060;lr", toTag="t", headers=(
            ("Route", "<sip:192.0.2.50:5070;lr>, <sip:bob@192.0.2.20:5062>"),)))
        sent = self.h.lastRequest("BYE")
        self.assertEqual(str(sent.message.requestURI), "sip:bob@192.0.2.20:5062")  # type: ignore[union-attr]
        self.assertEqual(sent.destination, Address("udp", "192.0.2.50", 5070))

    def test_recordRoute(self) -> None:
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.assertEqual(self.h.lastRequest("INVITE").message.getHeaderValues("Record-Route"), ["<sip:192.0.2.1:5060;lr>"])

    def test_doubleRecordRoute(self) -> None:
        """UDP in, TCP out: one Record-Route per side, the outgoing one on top."""
        self.h.register("bob@example.com", "sip:bob@192.0.2.20:5062;transport=tcp")
        self.h.receive(self.h.invite("sip:bob@example.com"))
        sent = self.h.lastRequest("INVITE")
        self.assertEqual(sent.destination, Address("tcp", "192.0.2.20", 5062))
        self.assertEqual(sent.message.getHeaderValues("Record-Route"),
                         ["<sip:192.0.2.1:5060;transport=tcp;lr>", "<sip:192.0.2.1:5060;lr>"])
        self.assertTrue(sent.message.topVia.transport == "TCP")

    def test_noRecordRouteWhenDisabled(self) -> None:
        h = RoutingHarness(section={"record_route": "no"})
        self.addCleanup(h.stop)
        h.register("bob@example.com", CALLEE)
        h.receive(h.invite("sip:bob@example.com"))
        self.assertEqual(h.lastRequest("INVITE").message.getHeader("Record-Route"), None)

    def test_bothRouteEntriesOfDoubleRecordRouteRemoved(self) -> None:
        self.h.receive(self.h.request("BYE", "sip:bob@192.0.2.20:5062;transport=tcp", toTag="t", headers=(
            ("Route", "<sip:192.0.2.1:5060;lr>, <sip:192.0.2.1:5060;transport=tcp;lr>"),)))
        sent = self.h.lastRequest("BYE")
        self.assertEqual(sent.message.getHeader("Route"), None)
        self.assertEqual(sent.destination, Address("tcp", "192.0.2.20", 5062))

    def test_byeForUnknownDialogForwarded(self) -> None:
        """The proxy keeps no dialog state: the route set decides, the 481 comes back."""
        self.h.receive(self.h.request("BYE", CALLEE, toTag="gone", headers=(("Route", "<sip:192.0.2.1:5060;lr>"),)))
        self.h.answer(self.h.lastRequest("BYE"), 481)
        self.assertEqual(self.finals(), [481])
        self.assertClean()

    def test_foreignDomainForwardedToRequestURI(self) -> None:
        self.h.receive(self.h.request("MESSAGE", "sip:x@198.51.100.99:5080"))
        self.assertEqual(self.h.lastRequest("MESSAGE").destination, Address("udp", "198.51.100.99", 5080))

    def test_nameWithoutResolver(self) -> None:
        """A host name and no resolver: 503, nothing left behind."""
        self.h.receive(self.h.invite("sip:x@far.example.org"))
        self.assertEqual(self.finals(), [503])
        self.assertClean()


class ForkingTests(ProxyTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.h.register("bob@example.com", "sip:bob@192.0.2.20:5060", q=1.0)
        self.h.register("bob@example.com", "sip:bob@192.0.2.21:5060", q=0.5)

    def branches(self) -> list:
        return self.h.requests("INVITE")

    def test_parallel(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        first, second = self.branches()
        self.assertEqual({first.destination.host, second.destination.host}, {"192.0.2.20", "192.0.2.21"})
        self.h.answer(first, 180)
        self.h.answer(second, 180, toTag="other")
        self.assertEqual(len(self.h.responses(180)), 2)
        self.h.answer(second, 200, toTag="other")
        self.assertEqual(self.finals(), [200])
        [cancel] = self.h.requests("CANCEL")
        self.assertEqual(cancel.destination, first.destination)
        self.assertEqual(cancel.message.topVia.branch, first.message.topVia.branch)
        self.h.answer(cancel, 200)
        self.h.answer(first, 487)
        self.assertEqual(self.finals(), [200])
        self.assertClean()

    def test_serial(self) -> None:
        h = RoutingHarness(section={"fork_mode": "serial"})
        self.addCleanup(h.stop)
        h.register("bob@example.com", "sip:bob@192.0.2.20:5060", q=0.5)
        h.register("bob@example.com", "sip:bob@192.0.2.21:5060", q=1.0)
        h.receive(h.invite("sip:bob@example.com"))
        [first] = h.requests("INVITE")
        self.assertEqual(first.destination.host, "192.0.2.21")
        h.answer(first, 486)
        [_, second] = h.requests("INVITE")
        self.assertEqual(second.destination.host, "192.0.2.20")
        h.answer(second, 200)
        self.assertEqual([s.message.code for s in h.finalResponses()], [200])

    def test_sixHundredCancelsAndWins(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        first, second = self.branches()
        self.h.answer(first, 180)
        self.h.answer(second, 603)
        self.assertEqual(self.finals(), [])  # waits for the cancelled branch
        [cancel] = self.h.requests("CANCEL")
        self.assertEqual(cancel.destination, first.destination)
        self.h.answer(first, 487)
        self.assertEqual(self.finals(), [603])

    def test_lowestClassWins(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        first, second = self.branches()
        self.h.answer(first, 500)
        self.h.answer(second, 486)
        self.assertEqual(self.finals(), [486])

    def test_503BecomesFiveHundred(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        first, second = self.branches()
        self.h.answer(first, 503)
        self.h.answer(second, 503)
        self.assertEqual(self.finals(), [500])

    def test_challengesAggregated(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        first, second = self.branches()
        self.h.answer(first, 407, headers=(("Proxy-Authenticate", 'Digest realm="a", nonce="1"'),))
        self.h.answer(second, 407, headers=(("Proxy-Authenticate", 'Digest realm="b", nonce="2"'),))
        [final] = self.h.finalResponses()
        self.assertEqual(final.message.code, 407)
        self.assertEqual(sorted(final.message.getHeaderValues("Proxy-Authenticate")),
                         ['Digest realm="a", nonce="1"', 'Digest realm="b", nonce="2"'])
        self.assertEqual(len(final.message.getHeaderValues("Via")), 1)

    def test_twoHundredsBothForwarded(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        first, second = self.branches()
        self.h.answer(first, 200)
        self.h.answer(second, 200, toTag="other")
        self.assertEqual(self.finals(), [200, 200])

    def test_twoHundredRetransmissionForwarded(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        first, _ = self.branches()
        response = self.h.answer(first, 200)
        self.h.receive(response, first.destination)
        self.assertEqual(self.finals(), [200, 200])


class CancelAndTimerTests(ProxyTestCase):
    section = {"timer_c": "200"}
    timers = TimerSettings(T1=10.0, T2=40.0)

    def setUp(self) -> None:
        super().setUp()
        self.h.register("bob@example.com", CALLEE)

    def test_callerCancelsRingingBranch(self) -> None:
        invite = self.h.invite("sip:bob@example.com")
        self.h.receive(invite)
        forwarded = self.h.lastRequest("INVITE")
        self.h.answer(forwarded, 180)
        cancel = invite.replace("INVITE sip", "CANCEL sip", 1).replace("INVITE\r\n", "CANCEL\r\n")
        self.h.receive(cancel)
        self.assertEqual(self.finals(), [200])  # for the CANCEL
        [downstream] = self.h.requests("CANCEL")
        self.h.answer(downstream, 200)
        self.h.answer(forwarded, 487)
        self.assertEqual(self.finals(), [200, 487])
        self.assertEqual(self.h.requests("ACK")[0].destination, CALLEE_ADDRESS)  # hop-by-hop ACK for the 487

    def test_callerCancelsBeforeProvisional(self) -> None:
        """No CANCEL before a provisional (§9.1): 487 at once, CANCEL on a late 180."""
        invite = self.h.invite("sip:bob@example.com")
        self.h.receive(invite)
        forwarded = self.h.lastRequest("INVITE")
        self.h.receive(invite.replace("INVITE sip", "CANCEL sip", 1).replace("INVITE\r\n", "CANCEL\r\n"))
        self.assertEqual(self.finals(), [200, 487])
        self.assertEqual(self.h.requests("CANCEL"), [])
        self.h.answer(forwarded, 180)
        self.assertEqual(len(self.h.requests("CANCEL")), 1)
        self.assertEqual(self.h.responses(180), [])

    def test_timerCCancelsRingingBranch(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        forwarded = self.h.lastRequest("INVITE")
        self.h.answer(forwarded, 180)
        self.h.advance(150)
        self.h.answer(forwarded, 183)  # a provisional restarts timer C
        self.h.advance(199)
        self.assertEqual(self.h.requests("CANCEL"), [])
        self.h.advance(1)
        [cancel] = self.h.requests("CANCEL")
        self.h.answer(cancel, 200)
        self.h.answer(forwarded, 487)
        self.assertEqual(self.finals(), [480])
        self.assertClean()

    def test_timerCWithoutProvisional(self) -> None:
        """§16.8: as if a 408 arrived; the client transaction is gone."""
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.h.advance(200)
        self.assertEqual(self.finals(), [408])
        self.assertEqual(self.h.transactions.client, {})

    def test_calleeIgnoresCancel(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.h.answer(self.h.lastRequest("INVITE"), 180)
        self.h.advance(200)
        self.assertEqual(len(self.h.requests("CANCEL")), 1)
        self.h.pump(700, 10)
        self.assertEqual(self.finals(), [480])
        self.assertClean()


class FailureTests(ProxyTestCase):
    def test_noAnswerTimerB(self) -> None:
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.h.pump(33, 0.5)
        self.assertEqual(self.finals(), [408])
        self.assertClean()

    def test_unreachable(self) -> None:
        self.h.register("bob@example.com", CALLEE)
        self.h.transports.failSendsTo(CALLEE_ADDRESS)
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.h.advance(0)
        self.assertEqual(self.finals(), [503])
        self.assertClean()

    def test_serverTransactionFailure(self) -> None:
        """The upstream cannot be reached any more: branches are cancelled, nothing stays."""
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.invite("sip:bob@example.com"))
        forwarded = self.h.lastRequest("INVITE")
        self.h.answer(forwarded, 180)
        self.h.transports.failSendsTo(CALLER)
        self.h.answer(forwarded, 183)
        self.h.advance(0)
        self.assertEqual(len(self.h.requests("CANCEL")), 1)
        self.h.answer(forwarded, 487)
        self.assertClean()


class StatelessTests(ProxyTestCase):
    def test_ackForTwoHundredRoutedStatelessly(self) -> None:
        self.h.receive(self.h.request("ACK", CALLEE, toTag="t", headers=(("Route", "<sip:192.0.2.1:5060;lr>"),)))
        [ack] = self.h.requests("ACK")
        self.assertEqual(ack.destination, CALLEE_ADDRESS)
        self.assertEqual(ack.message.getHeader("Route"), None)
        self.assertTrue(ack.message.topVia.branch.startswith("z9hG4bKvg"))
        self.assertEqual(self.h.transactions.client, {})

    def test_ackRetransmissionSameBranch(self) -> None:
        ack = self.h.request("ACK", CALLEE, toTag="t", headers=(("Route", "<sip:192.0.2.1:5060;lr>"),))
        self.h.receive(ack)
        self.h.receive(ack)
        first, second = self.h.requests("ACK")
        self.assertEqual(first.message.topVia.branch, second.message.topVia.branch)

    def test_ackWithoutRouteForUsDropped(self) -> None:
        self.h.receive(self.h.request("ACK", "sip:bob@example.com", toTag="t"))
        self.assertEqual(self.h.sent, [])
        self.assertEqual(self.h.counters.get("routing.dropped.ack_no_route"), 1)

    def _stray(self, code: int, ours: bool, method: str = "INVITE") -> None:
        via = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKvg0123456789abcdef.1" if ours else "SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bKx"
        response = Response(code, None, [
            ("Via", via), ("Via", "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKcaller;rport=5060"),
            ("From", "<sip:alice@example.com>;tag=a"), ("To", "<sip:bob@example.com>;tag=b"),
            ("Call-ID", "stray@x"), ("CSeq", f"1 {method}"),
        ])
        self.h.receive(response, CALLEE_ADDRESS)

    def test_stray2xxForwarded(self) -> None:
        self._stray(200, True)
        [sent] = self.h.responses(200)
        self.assertEqual(sent.destination, CALLER)
        self.assertEqual(len(sent.message.getHeaderValues("Via")), 1)

    def test_strayForeignViaDropped(self) -> None:
        self._stray(200, False)
        self._stray(486, True)
        self._stray(200, True, "BYE")
        self.assertEqual(self.h.sent, [])
        self.assertEqual(self.h.counters.get("routing.dropped.stray_response"), 3)


class ForwardedCopyTests(ProxyTestCase):
    """The forwarded copy is built in one pass and keeps parsed headers: both must match a fresh parse."""

    def assertParsedAsWire(self, message: object) -> None:
        fresh = parseMessage(message.toBytes())  # type: ignore[attr-defined]
        for name in ("vias", "fromAddress", "toAddress", "cseq"):
            self.assertEqual(str(getattr(message, name)), str(getattr(fresh, name)), name)
        self.assertEqual(message.callId, fresh.callId)  # type: ignore[attr-defined]
        self.assertEqual(message.getHeaderValues("Record-Route"), fresh.getHeaderValues("Record-Route"))  # type: ignore[attr-defined]

    def test_inviteCopyParsedAsWire(self) -> None:
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.invite("sip:bob@example.com", headers=(
            ("Record-Route", "<sip:198.51.100.9;lr>"), ("Via", "SIP/2.0/UDP 198.51.100.9;branch=z9hG4bKup, SIP/2.0/TCP 198.51.100.10;branch=z9hG4bKup2"))))
        sent = self.h.lastRequest("INVITE").message
        self.assertParsedAsWire(sent)
        self.assertEqual(len(sent.vias), 4)  # type: ignore[attr-defined]
        self.assertEqual(sent.getHeaderValues("Record-Route"), ["<sip:192.0.2.1:5060;lr>", "<sip:198.51.100.9;lr>"])  # type: ignore[attr-defined]
        self.assertEqual(str(sent.vias[0]), str(self.h.transactions.localVia(CALLEE_ADDRESS, branch=sent.vias[0].branch)))  # type: ignore[attr-defined]

    def test_relayedResponseLosesOnlyOurVia(self) -> None:
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.h.answer(self.h.lastRequest("INVITE"), 180)
        [ringing] = self.h.responses(180)
        fresh = parseMessage(ringing.data)
        self.assertEqual(len(fresh.vias), 1)
        self.assertEqual(fresh.vias[0].host, CALLER.host)
        self.assertEqual(str(ringing.message.vias[0]), str(fresh.vias[0]))  # type: ignore[attr-defined]

    def test_relayedResponseFoldedViasParsedAsWire(self) -> None:
        """Our Via folded into one line with the others: the parsed Vias left match the wire."""
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.invite("sip:bob@example.com", headers=(
            ("Via", "SIP/2.0/UDP 198.51.100.9;branch=z9hG4bKup, SIP/2.0/TCP 198.51.100.10;branch=z9hG4bKup2"),)))
        sent = self.h.lastRequest("INVITE")
        request = sent.parsed()
        response = responseTo(request, 180, None, "callee")  # type: ignore[arg-type]
        response.setHeader("Via", ", ".join(request.getHeaderValues("Via")))
        self.assertEqual(len(response.getHeaderValues("Via")), 4)
        self.h.receive(response.toBytes(), sent.destination)
        [ringing] = self.h.responses(180)
        self.assertParsedAsWire(ringing.message)
        self.assertEqual(len(ringing.message.vias), 3)  # type: ignore[attr-defined]
        self.assertEqual(ringing.message.vias[0].host, CALLER.host)  # type: ignore[attr-defined]


class ReleaseTests(ProxyTestCase):
    """
    A finished proxy context is freed by reference counting, without the
    garbage collector: a worker freezes its old objects (voipgw.gcfreeze),
    and a reference cycle among frozen objects would never be freed.
    """

    def setUp(self) -> None:
        super().setUp()
        gc.disable()
        self.addCleanup(gc.enable)

    def contextOf(self) -> "weakref.ref[object]":
        [context] = self.h.service.contexts
        return weakref.ref(context)

    def assertFreed(self, *refs: "weakref.ref[object]") -> None:
        self.h.pump(70, 2)
        self.h.clear()  # the fake network keeps what was sent, with its onError callbacks
        self.assertEqual([ref() for ref in refs], [None] * len(refs))

    def test_answeredCall(self) -> None:
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.invite("sip:bob@example.com"))
        context = self.contextOf()
        [server] = self.h.transactions.server.values()
        [client] = self.h.transactions.client.values()
        serverRef, clientRef = weakref.ref(server), weakref.ref(client)
        del server, client
        invite = self.h.lastRequest("INVITE")
        self.h.answer(invite, 180)
        self.h.answer(invite, 200)
        del invite  # a sent message keeps its onError callback (the client transaction)
        self.assertFreed(context, serverRef, clientRef)

    def test_forkedWithCancelledBranch(self) -> None:
        self.h.register("bob@example.com", "sip:bob@192.0.2.20:5060")
        self.h.register("bob@example.com", "sip:bob@192.0.2.21:5060")
        self.h.receive(self.h.invite("sip:bob@example.com"))
        context = self.contextOf()
        first, second = self.h.requests("INVITE")
        self.h.answer(first, 180)
        self.h.answer(second, 200, toTag="other")
        self.h.answer(self.h.lastRequest("CANCEL"), 200)
        self.h.answer(first, 487)
        del first, second
        self.assertFreed(context)

    def test_timedOutBranchFailsOver(self) -> None:
        """No answer from the first address: the context lives on for the failover, then is freed."""
        self.h.register("bob@example.com", CALLEE)
        self.h.receive(self.h.request("OPTIONS", "sip:bob@example.com"))
        context = self.contextOf()
        self.h.pump(40, 2)  # timer F: the branch gives up with a 408
        self.assertEqual(self.finals(), [408])
        self.assertFreed(context)

    def test_callerCancels(self) -> None:
        self.h.register("bob@example.com", CALLEE)
        invite = self.h.invite("sip:bob@example.com")
        self.h.receive(invite)
        context = self.contextOf()
        self.h.answer(self.h.lastRequest("INVITE"), 180)
        self.h.receive(buildCancel(parseMessage(invite.encode())))  # type: ignore[arg-type]
        self.h.answer(self.h.lastRequest("CANCEL"), 200)
        self.h.answer(self.h.lastRequest("INVITE"), 487)
        self.assertEqual(self.finals(), [200, 487])  # the CANCEL's, the INVITE's
        self.assertFreed(context)
