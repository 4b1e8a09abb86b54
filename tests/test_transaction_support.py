# -*- test-case-name: tests.test_transaction_support -*-
"""
Shared fixtures for the transaction tests (wire-byte message builders,
recording transaction users, a harness with a L{task.Clock}), and the tests
of L{voipgw.testing.FakeTransportService} itself.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet import task
from twisted.trial import unittest

from voipgw.sip.message import Request, Response, parseMessage
from voipgw.testing import FakeTransportService, SentMessage
from voipgw.transaction import TimerSettings, TransactionLayer
from voipgw.transport.address import Address

#: Non-default timers, all exact binary fractions so clock sums are exact:
#: T1 = 1/4 s, T2 = 2 s, T4 = 3 s, 100 Trying after 1/8 s.
TIMERS = TimerSettings(T1=0.25, T2=2.0, T4=3.0, trying=0.125)
T1, T2, T4 = TIMERS.T1, TIMERS.T2, TIMERS.T4
SIXTY_FOUR_T1 = 16.0

PEER_UDP = Address("udp", "198.51.100.7", 5060)
PEER_TCP = Address("tcp", "198.51.100.7", 40001)
NEXT_HOP_UDP = Address("udp", "203.0.113.9", 5060)
NEXT_HOP_TCP = Address("tcp", "203.0.113.9", 5060)

BRANCH = "z9hG4bK776asdhds"


def request(
    method: str = "INVITE",
    branch: Optional[str] = BRANCH,
    cseq: Optional[int] = 314159,
    cseqMethod: Optional[str] = None,
    transport: str = "UDP",
    sentBy: str = "198.51.100.7:5060",
    uri: str = "sip:bob@example.com",
    toTag: Optional[str] = None,
    fromTag: str = "1928301774",
    extra: tuple[str, ...] = (),
) -> bytes:
    """The wire bytes of a request from the peer (RFC 3261 §24.2 style)."""
    branchParam = f";branch={branch}" if branch is not None else ""
    to = "Bob <sip:bob@example.com>" + (f";tag={toTag}" if toTag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {sentBy}{branchParam}",
        "Max-Forwards: 70",
        f"To: {to}",
        f"From: Alice <sip:alice@example.org>;tag={fromTag}",
        "Call-ID: a84b4c76e66710@pc33.example.org",
        f"CSeq: {cseq} {cseqMethod or method}",
        "Contact: <sip:alice@198.51.100.7>",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def responseBytes(
    code: int,
    sent: Request,
    toTag: Optional[str] = "a6c85cf",
    reason: str = "Whatever",
    cseqMethod: Optional[str] = None,
    branch: Optional[str] = None,
) -> bytes:
    """The wire bytes of a response from the next hop to the request C{sent}."""
    via = sent.getHeaderValues("Via")[0]
    if branch is not None:
        via = via.replace(sent.topVia.branch or "", branch)
    to = sent.getHeader("To") or ""
    if toTag and code != 100:
        to += f";tag={toTag}"
    lines = [
        f"SIP/2.0 {code} {reason}",
        f"Via: {via}",
        f"To: {to}",
        f"From: {sent.getHeader('From')}",
        f"Call-ID: {sent.callId}",
        f"CSeq: {sent.cseq.number} {cseqMethod or sent.cseq.method}",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def outgoing(method: str = "INVITE", route: tuple[str, ...] = ()) -> Request:
    """A request this node sends (the layer adds its Via)."""
    headers = [("Route", r) for r in route] + [
        ("Max-Forwards", "70"),
        ("To", "Carol <sip:carol@chicago.example.com>"),
        ("From", "Bob <sip:bob@biloxi.example.com>;tag=8321234356"),
        ("Call-ID", "3848276298220188511@atlanta.example.com"),
        ("CSeq", f"7 {method}"),
        ("Contact", "<sip:bob@192.0.2.1>"),
    ]
    return Request(method, "sip:carol@chicago.example.com", headers)


class ServerUser:
    """A transaction user recording what the layer hands it."""

    def __init__(self, onRequest: Optional[Callable[[Request, Any], None]] = None) -> None:
        self.requests: list[tuple[Request, Any]] = []
        self.acks: list[tuple[Request, Address, Any]] = []
        self.strays: list[tuple[Response, Address]] = []
        self.onRequest = onRequest

    def handleRequest(self, request: Request, transaction: Any) -> None:
        self.requests.append((request, transaction))
        if self.onRequest is not None:
            self.onRequest(request, transaction)

    def handleAck(self, ack: Request, source: Address, transaction: Any) -> None:
        self.acks.append((ack, source, transaction))

    def handleStrayResponse(self, response: Response, source: Address) -> None:
        self.strays.append((response, source))


class ClientUser:
    """A client transaction user recording its callbacks, with their times."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.responses: list[tuple[int, Any, float]] = []
        self.timeouts: list[tuple[Any, float]] = []
        self.failures: list[tuple[Any, str, float]] = []

    def responseReceived(self, response: Response, transaction: Any) -> None:
        self.responses.append((response.code, transaction, self.clock.seconds()))

    def timedOut(self, transaction: Any) -> None:
        self.timeouts.append((transaction, self.clock.seconds()))

    def transportFailed(self, transaction: Any, reason: str) -> None:
        self.failures.append((transaction, reason, self.clock.seconds()))


class Harness:
    """A layer on a fake transport and a clock, with the non-default L{TIMERS}."""

    def __init__(self, timers: TimerSettings = TIMERS, syncErrors: bool = False) -> None:
        self.clock = task.Clock()
        self.transports = FakeTransportService(self.clock, synchronousErrors=syncErrors)
        self.user = ServerUser()
        self.layer = TransactionLayer(self.transports, self.clock, timers, user=self.user)

    def receive(self, data: bytes, source: Address = PEER_UDP) -> Any:
        return self.transports.receive(data, source)

    def advanceTo(self, when: float) -> None:
        """
        Move the clock to C{when}, stopping at each delayed call on the way
        (L{task.Clock.advance} would run a call scheduled by another call
        relative to the end of the step, not to when it ran).
        """
        advanceTo(self.clock, when)

    def advance(self, amount: float) -> None:
        advanceTo(self.clock, self.clock.seconds() + amount)

    def sent(self) -> list[SentMessage]:
        return self.transports.sent

    def empty(self) -> bool:
        return not self.layer.server and not self.layer.client and not self.clock.getDelayedCalls()


def advanceTo(clock: task.Clock, when: float) -> None:
    """Step C{clock} to C{when} through every delayed call due on the way."""
    assert when >= clock.seconds(), (when, clock.seconds())
    while True:
        due = [c.getTime() for c in clock.getDelayedCalls() if c.getTime() <= when]
        if not due:
            break
        clock.advance(max(0.0, min(due) - clock.seconds()))
    clock.advance(when - clock.seconds())


def times(sent: list[SentMessage]) -> list[Optional[float]]:
    """When each message was sent."""
    return [s.time for s in sent]


class FakeTransportServiceTests(unittest.TestCase):
    """L{FakeTransportService} records, routes responses and fails on request."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.transports = FakeTransportService(self.clock)
        self.received: list[tuple[Any, Address]] = []

        class Receiver:
            def receiveMessage(receiver, message: Any, source: Address) -> None:
                self.received.append((message, source))

        self.transports.receiver = Receiver()

    def test_receiveParsesAndMarksVia(self) -> None:
        """Injected bytes arrive parsed, with C{received} added as the real transport does."""
        source = Address("udp", "192.0.2.99", 5070)
        message = self.transports.receive(request("OPTIONS"), source)
        self.assertEqual(self.received, [(message, source)])
        self.assertEqual(message.method, "OPTIONS")
        self.assertEqual(message.topVia.received, "192.0.2.99")

    def test_sendRecordsTimeAndBytes(self) -> None:
        """C{send} records the message, destination, bytes and clock time."""
        self.clock.advance(2.5)
        message = outgoing("OPTIONS")
        message.addHeader("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKq", first=True)
        self.transports.send(message, NEXT_HOP_UDP)
        [sent] = self.transports.sent
        self.assertEqual((sent.message, sent.destination, sent.time), (message, NEXT_HOP_UDP, 2.5))
        self.assertEqual(sent.data, message.toBytes())
        self.assertEqual(sent.parsed().method, "OPTIONS")
        self.assertEqual(self.transports.requests("OPTIONS"), [sent])
        self.assertEqual(self.transports.requests("INVITE"), [])
        self.assertEqual(self.transports.clear(), [sent])
        self.assertEqual(self.transports.sent, [])

    def test_responseDestination(self) -> None:
        """Responses go to received/rport (UDP) or back to a stream source."""
        self.transports.receiver = None
        message = self.transports.receive(request("OPTIONS", extra=()), Address("udp", "192.0.2.99", 5070))
        response = Response(200, None, [("Via", message.getHeaderValues("Via")[0])])
        self.assertEqual(
            FakeTransportService.responseDestination(response, Address("udp", "192.0.2.99", 5070)),
            Address("udp", "192.0.2.99", 5060),
        )
        message = self.transports.receive(request("OPTIONS", sentBy="10.0.0.1:5060;rport"), Address("udp", "192.0.2.99", 5070))
        response = Response(200, None, [("Via", message.getHeaderValues("Via")[0])])
        self.assertEqual(FakeTransportService.responseDestination(response), Address("udp", "192.0.2.99", 5070))
        self.assertEqual(FakeTransportService.responseDestination(response, PEER_TCP), PEER_TCP)

    def test_failSendsToAsynchronous(self) -> None:
        """With a clock, C{onError} is called on the next clock turn."""
        errors: list[str] = []
        self.transports.failSendsTo(NEXT_HOP_UDP, "host unreachable")
        message = outgoing("OPTIONS")
        self.transports.send(message, NEXT_HOP_UDP, onError=errors.append)
        self.assertEqual(errors, [])
        self.clock.advance(0)
        self.assertEqual(errors, ["host unreachable"])
        self.transports.send(message, NEXT_HOP_TCP, onError=errors.append)
        self.clock.advance(0)
        self.assertEqual(errors, ["host unreachable"])

    def test_failSendsToSynchronous(self) -> None:
        """Without a clock, C{onError} is called at once."""
        transports = FakeTransportService()
        errors: list[str] = []
        transports.failSendsTo(NEXT_HOP_UDP)
        transports.send(outgoing("OPTIONS"), NEXT_HOP_UDP, onError=errors.append)
        self.assertEqual(errors, ["connection refused"])
        self.assertIsNone(transports.sent[0].time)

    def test_listenerFor(self) -> None:
        """C{listenerFor} picks the listener of the transport and IP family."""
        listener = self.transports.listenerFor("tls", "203.0.113.9")
        assert listener is not None
        self.assertEqual((listener.address, listener.reliable), (Address("tls", "192.0.2.1", 5061), True))
        self.assertIsNone(FakeTransportService(listen=[]).listenerFor("udp"))
