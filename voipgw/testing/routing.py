# -*- test-case-name: tests.test_proxy,tests.test_tutorial -*-
"""
Test your routing on a C{task.Clock}, without sockets.

L{RoutingHarness} builds the node's message path (a fake transport
service, the transaction layer, the request dispatcher, a memory location
store) around a routing service (the stock L{RoutingService} or your
subclass), lets the test feed requests as wire text, see what the proxy
sent, and answer forwarded requests as the callee would::

    harness = RoutingHarness(MyRouting, {"fork_mode": "serial"}, domains=["example.com"])
    harness.register("bob@example.com", "sip:bob@192.0.2.20:5060")
    harness.receive(harness.invite("sip:bob@example.com"))
    forwarded = harness.lastRequest("INVITE")
    harness.answer(forwarded, 486)
    assert harness.responses(486)

Everything is synchronous: time passes only with L{RoutingHarness.advance}.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from twisted.internet.task import Clock

from voipgw.dispatch import RequestDispatcher
from voipgw.location.binding import Binding
from voipgw.location.memory import MemoryLocationStore
from voipgw.routing.config import RoutingConfig
from voipgw.routing.service import RoutingService, routingServiceFromConfig
from voipgw.sip.message import Request, Response, responseTo
from voipgw.stats import Counters
from voipgw.testing.transport import FakeTransportService, SentMessage
from voipgw.transaction.layer import TransactionLayer
from voipgw.transaction.timers import TimerSettings
from voipgw.transport.address import Address

__all__ = ["RoutingHarness", "LocalFakeTransportService", "CALLER"]

#: Where requests come from unless a test says otherwise.
CALLER = Address("udp", "198.51.100.7", 5060)


class LocalFakeTransportService(FakeTransportService):
    """A fake transport service that also answers C{isLocal} like the real one."""

    def isLocal(self, host: str, port: Optional[int]) -> bool:
        host = host.strip("[]")
        return any(l.host == host and (port is None or port == l.port) for l in self.listeners)


class RoutingHarness:
    """
    A routing service wired to a fake network.

    @param serviceClass: L{RoutingService} or a subclass.
    @param section: the C{[routing]} section as a dict (or a L{RoutingConfig}).
    @param domains: the node's domains.
    """

    def __init__(
        self,
        serviceClass: type = RoutingService,
        section: Union[dict[str, str], RoutingConfig, None] = None,
        domains: tuple[str, ...] | list[str] = ("example.com",),
        clock: Optional[Clock] = None,
        location: Any = None,
        authenticator: Any = None,
        subscribers: Any = None,
        resolver: Any = None,
        listen: Optional[list[Address]] = None,
        timers: Optional[TimerSettings] = None,
        start: bool = True,
    ) -> None:
        self.clock = clock if clock is not None else Clock()
        self.counters = Counters()
        self.transports = LocalFakeTransportService(self.clock, listen)
        self.dispatcher = RequestDispatcher(self.transports, domains, self.counters)
        self.transactions = TransactionLayer(self.transports, self.clock, timers, self.counters, self.dispatcher)
        self.location = location if location is not None else MemoryLocationStore(self.clock)
        config = section if isinstance(section, RoutingConfig) else RoutingConfig.fromSection(dict(section or {}))
        if serviceClass is not RoutingService:
            config.application = None
        service = routingServiceFromConfig(
            config, self.transactions, self.transports, self.dispatcher, self.location, self.clock,
            authenticator=authenticator, subscribers=subscribers, resolver=resolver, counters=self.counters,
        )
        if serviceClass is not RoutingService and not isinstance(service, serviceClass):
            service = serviceClass(
                config, self.transactions, self.transports, self.dispatcher, self.location, self.clock,
                authenticator=authenticator, subscribers=subscribers, resolver=resolver,
                dispatcherSets=service.dispatcherSets, counters=self.counters,
            )
        self.service: RoutingService = service
        self.dispatcher.register(service)
        self._cseq = 0
        if start:
            service.startService()

    def stop(self) -> None:
        """Stop the service and the transaction layer (cancels their timers)."""
        if self.service.running:
            self.service.stopService()
        self.transactions.stopService()

    # -- setting up ----------------------------------------------------------

    def register(self, aor: str, contact: str, q: float = 1.0, path: tuple[str, ...] = (),
                 received: str = "", expires: float = 3600.0, **kw: Any) -> Binding:
        """Save a binding of C{aor} (C{user@domain}) as the registrar would."""
        binding = Binding(aor=aor.lower(), contact=contact, expires=self.clock.seconds() + expires, q=q,
                          path=tuple(path), received=received, **kw)
        self.location.save(binding)
        return binding

    # -- requests ----------------------------------------------------------------

    def request(self, method: str, uri: str, fromURI: str = "sip:alice@example.com", toURI: Optional[str] = None,
                headers: tuple[tuple[str, str], ...] = (), toTag: Optional[str] = None,
                callId: Optional[str] = None, cseq: Optional[int] = None, via: Optional[str] = None,
                maxForwards: Optional[int] = 70, body: str = "") -> str:
        """Wire text of a request as a UA at L{CALLER} would send it."""
        self._cseq += 1
        branch = "z9hG4bK" + os.urandom(6).hex()
        to = f"<{toURI or uri}>" + (f";tag={toTag}" if toTag else "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: {via or f'SIP/2.0/UDP {CALLER.host}:{CALLER.port};branch={branch};rport'}",
        ]
        if maxForwards is not None:
            lines.append(f"Max-Forwards: {maxForwards}")
        lines += [
            f"From: <{fromURI}>;tag=caller{self._cseq}",
            f"To: {to}",
            f"Call-ID: {callId or os.urandom(8).hex() + '@198.51.100.7'}",
            f"CSeq: {cseq if cseq is not None else self._cseq} {method}",
            f"Contact: <sip:caller@{CALLER.host}:{CALLER.port}>",
        ]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def invite(self, uri: str, **kw: Any) -> str:
        return self.request("INVITE", uri, **kw)

    def receive(self, data: Union[str, bytes, Request, Response], source: Address = CALLER) -> Any:
        """Deliver a request or response (wire text or a message) as if it came from C{source}."""
        if isinstance(data, (Request, Response)):
            data = data.toBytes()
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self.transports.receive(data, source)

    # -- what the proxy sent -------------------------------------------------------

    @property
    def sent(self) -> list[SentMessage]:
        return self.transports.sent

    def requests(self, method: Optional[str] = None) -> list[SentMessage]:
        return self.transports.requests(method)

    def responses(self, code: Optional[int] = None) -> list[SentMessage]:
        return self.transports.responses(code)

    def lastRequest(self, method: Optional[str] = None) -> SentMessage:
        found = self.requests(method)
        if not found:
            raise AssertionError(f"no {method or ''} request was sent; sent: {[str(s.message) for s in self.sent]}")
        return found[-1]

    def finalResponses(self) -> list[SentMessage]:
        return [s for s in self.responses() if s.message.code >= 200]  # type: ignore[attr-defined]

    def clear(self) -> list[SentMessage]:
        return self.transports.clear()

    # -- playing the callee ------------------------------------------------------

    def answer(self, sent: SentMessage, code: int, reason: Optional[str] = None,
               headers: tuple[tuple[str, str], ...] = (), toTag: Optional[str] = "callee") -> Response:
        """
        Answer a request the proxy forwarded, as the UA at its destination
        would: the response goes back through the fake network.
        """
        request = sent.parsed()
        assert isinstance(request, Request)
        response = responseTo(request, code, reason, toTag if code > 100 else None)
        for name, value in headers:
            response.addHeader(name, value)
        if 200 <= code < 300 and request.method == "INVITE":
            for value in request.getHeaderValues("Record-Route"):
                response.addHeader("Record-Route", value)
            response.addHeader("Contact", f"<sip:callee@{sent.destination.hostForURI}:{sent.destination.port}>")
        self.receive(response, sent.destination)
        return response

    def advance(self, seconds: float) -> None:
        """Let C{seconds} pass on the clock (timers fire)."""
        self.clock.advance(seconds)

    def pump(self, seconds: float, step: float = 0.5) -> None:
        """Advance the clock in steps (retransmission timers fire in order)."""
        elapsed = 0.0
        while elapsed < seconds:
            self.clock.advance(step)
            elapsed += step
