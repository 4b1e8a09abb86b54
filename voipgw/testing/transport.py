# -*- test-case-name: tests.test_transaction_layer -*-
"""
A recording stand-in for L{voipgw.transport.manager.TransportService}.

Hand a L{FakeTransportService} to a L{voipgw.transaction.TransactionLayer}
(or anything else that sends SIP through the transport service), feed it
wire bytes with L{FakeTransportService.receive} and look at what was sent
in L{FakeTransportService.sent}::

    transports = FakeTransportService(clock)
    layer = TransactionLayer(transports, clock, user=myApplication)
    transports.receive(INVITE_BYTES, Address("udp", "192.0.2.7", 5060))
    [first] = transports.sent
    assert first.message.code == 100

Nothing touches the network.  Sends to a destination registered with
L{FakeTransportService.failSendsTo} report a failure through the sender's
C{onError}, asynchronously (on the next turn of C{clock}) as the real
transport service does, or synchronously when the fake has no clock or
was made with C{synchronousErrors=True}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from voipgw.sip.message import Message, Request, Response, parseMessage
from voipgw.transport.address import Address
from voipgw.transport.manager import TransportService

__all__ = ["FakeListener", "FakeTransportService", "SentMessage"]


@dataclass
class FakeListener:
    """What L{FakeTransportService.listenerFor} returns: a bound local address."""

    name: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.name != "udp"

    @property
    def address(self) -> Address:
        return Address(self.name, self.host, self.port)


@dataclass
class SentMessage:
    """
    One message handed to the fake: the message object, where it went, its
    bytes at the moment it was sent, the clock's time then (C{None} without
    a clock) and (for responses) the source address the sender answered.
    """

    message: Message
    destination: Address
    data: bytes
    time: Optional[float] = None
    source: Optional[Address] = None
    onError: Optional[Callable[[str], None]] = field(default=None, repr=False)

    @property
    def isResponse(self) -> bool:
        return isinstance(self.message, Response)

    def parsed(self) -> Message:
        """The message as a peer would read it: a fresh parse of L{data}."""
        return parseMessage(self.data, datagram=True)  # parsing validates


class FakeTransportService:
    """
    Records every send and delivers injected bytes to C{receiver}.

    @ivar sent: every L{SentMessage}, oldest first.
    @ivar receiver: whoever gets parsed incoming messages (the transaction
        layer sets itself here).
    """

    def __init__(
        self,
        clock: Any = None,
        listen: Optional[list[Address]] = None,
        synchronousErrors: bool = False,
    ) -> None:
        self.clock = clock
        self.synchronousErrors = synchronousErrors or clock is None
        self.receiver: Any = None
        self.sent: list[SentMessage] = []
        if listen is None:
            listen = [
                Address("udp", "192.0.2.1", 5060),
                Address("tcp", "192.0.2.1", 5060),
                Address("tls", "192.0.2.1", 5061),
            ]
        self.listeners = [FakeListener(a.transport, a.host, a.port) for a in listen]
        self._failures: dict[Address, str] = {}

    # -- the transport service's interface ------------------------------------

    def listenerFor(self, transport: str, host: Optional[str] = None) -> Optional[FakeListener]:
        fallback = None
        for listener in self.listeners:
            if listener.name == transport:
                if host is None or (":" in listener.host) == (":" in host):
                    return listener
                fallback = fallback or listener
        return fallback

    def isLocal(self, host: str, port: Optional[int]) -> bool:
        """True if C{host:port} names one of the fake listeners."""
        host = host[1:-1] if host.startswith("[") else host
        return any(l.host == host and (port is None or port == l.port) for l in self.listeners)

    def send(self, message: Message, destination: Address, onError: Optional[Callable[[str], None]] = None) -> None:
        self._record(message, destination, None, onError)

    def sendResponse(
        self, response: Response, source: Optional[Address] = None, onError: Optional[Callable[[str], None]] = None,
    ) -> None:
        self._record(response, self.responseDestination(response, source), source, onError)

    @staticmethod
    def responseDestination(response: Response, source: Optional[Address] = None) -> Address:
        """
        RFC 3261 §18.2.2 and RFC 3581 as the real service applies them: the
        source of a reliable request, else the top Via's received/rport,
        else its sent-by.
        """
        if source is not None and source.reliable:
            return source.withoutConnection()
        via = response.topVia
        transport = via.transport.lower()
        host = via.received or via.host
        rport = via.rport
        if rport and rport.isdigit():
            port = int(rport)
        elif source is not None and rport == "":
            port = source.port
        else:
            port = via.sentByPort
        return Address(transport, host.strip("[]"), port)

    # -- test controls ---------------------------------------------------------

    def failSendsTo(self, destination: Address, reason: str = "connection refused") -> None:
        """Make every later send to C{destination} fail with C{reason}."""
        self._failures[destination.withoutConnection()] = reason

    def receive(self, data: bytes, source: Address) -> Message:
        """
        Parse C{data} as if it arrived from C{source}, mark the top Via of a
        request with C{received}/C{rport} as the real transport does, and
        deliver the message to C{receiver}.  Returns the message.
        """
        message = parseMessage(data, datagram=not source.reliable)  # parsing validates
        if isinstance(message, Request):
            TransportService._markReceived(message, source)
        if self.receiver is not None:
            self.receiver.receiveMessage(message, source)
        return message

    def clear(self) -> list[SentMessage]:
        """Return and forget everything sent so far."""
        sent, self.sent = self.sent, []
        return sent

    def requests(self, method: Optional[str] = None) -> list[SentMessage]:
        """The sent requests (of C{method})."""
        return [
            s for s in self.sent
            if isinstance(s.message, Request) and (method is None or s.message.method == method)
        ]

    def responses(self, code: Optional[int] = None) -> list[SentMessage]:
        """The sent responses (with status C{code})."""
        return [
            s for s in self.sent
            if isinstance(s.message, Response) and (code is None or s.message.code == code)
        ]

    # -- internals -------------------------------------------------------------

    def _record(
        self, message: Message, destination: Address, source: Optional[Address], onError: Optional[Callable[[str], None]],
    ) -> None:
        now = self.clock.seconds() if self.clock is not None else None
        self.sent.append(SentMessage(message, destination, message.toBytes(), now, source, onError))
        reason = self._failures.get(destination.withoutConnection())
        if reason is not None and onError is not None:
            if not self.synchronousErrors:
                self.clock.callLater(0, onError, reason)
            else:
                onError(reason)

