# -*- test-case-name: tests.test_dispatch -*-
"""
The transaction user of the node: hands each new request to the
application that owns its method, answers OPTIONS addressed to the node,
and gives every other request a correct error instead of silence.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from twisted.logger import Logger

from voipgw.interfaces import ISIPApplication
from voipgw.sip.errors import SIPParseError
from voipgw.sip.message import Request, Response
from voipgw.stats import Counters
from voipgw.transport.address import Address

#: Methods defined by RFC 3261 and its common extensions.
KNOWN_METHODS = frozenset(
    ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
     "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"]
)

#: Option tags this node implements (RFC 3261 §19.2).
SUPPORTED = ("path", "outbound")
_SUPPORTED_HEADER = ", ".join(SUPPORTED)

ACCEPT = "application/sdp"


class RequestDispatcher:
    """
    Routes new requests to applications by method.

    An application registered for C{"*"} (the router) receives every
    method no other application claims.  C{isLocalURI(uri)} decides whether
    a Request-URI names this node itself (its address or one of its domains
    with no user part).
    """

    log = Logger(namespace="voipgw.dispatch.RequestDispatcher")

    def __init__(self, transports: Any, domains: Iterable[str] = (), counters: Optional[Counters] = None) -> None:
        self.transports = transports
        self.domains = {d.lower() for d in domains}
        self.counters = counters or Counters()
        self.applications: dict[str, Any] = {}
        self.fallback: Optional[Any] = None
        #: An L{voipgw.overload.OverloadGuard}, or None: new requests it
        #: refuses are answered 503 with Retry-After.
        self.overload: Optional[Any] = None
        #: The Allow header value and what it was built from (L{_allowHeader}).
        self._allow = ""
        self._allowKey: Optional[tuple[tuple[str, ...], bool]] = None

    def register(self, application: Any) -> None:
        """Register an L{ISIPApplication} for the methods it names."""
        for method in application.methods:
            if method == "*":
                self.fallback = application
            else:
                self.applications[method] = application

    def unregister(self, application: Any) -> None:
        for method, app in list(self.applications.items()):
            if app is application:
                del self.applications[method]
        if self.fallback is application:
            self.fallback = None

    @property
    def allowedMethods(self) -> list[str]:
        methods = {"OPTIONS", "ACK", "CANCEL"} | set(self.applications)
        if self.fallback is not None:
            methods |= {"INVITE", "BYE", "PRACK", "UPDATE", "INFO", "MESSAGE", "REFER", "SUBSCRIBE", "NOTIFY"}
        return sorted(methods)

    def _allowHeader(self) -> str:
        """L{allowedMethods} as an Allow header value, built again only when the applications change."""
        key = (tuple(self.applications), self.fallback is not None)
        if key != self._allowKey:
            self._allow = ", ".join(self.allowedMethods)
            self._allowKey = key
        return self._allow

    def isLocalHost(self, host: str, port: Optional[int] = None) -> bool:
        host = host.lower()
        return host in self.domains or self.transports.isLocal(host, port)

    def isForNode(self, request: Request) -> bool:
        """True if the Request-URI names this node (no user part)."""
        uri = request.requestURI
        return uri.isSIP and uri.user is None and self.isLocalHost(uri.host, uri.port)

    # -- transaction user --------------------------------------------------

    def handleRequest(self, request: Request, transaction: Any) -> None:
        method = request.method
        if self.overload is not None and not self.overload.admit(request):
            self.counters.increment("rejected.overload")
            transaction.respond(503, headers=[("Retry-After", str(self.overload.retryAfter))])
            return
        try:
            uri = request.requestURI
        except SIPParseError as e:
            transaction.respond(400, f"Bad Request ({e.reason})")
            return
        if uri.scheme not in ("sip", "sips", "tel"):
            self.counters.increment("rejected.unsupported_uri_scheme")
            transaction.respond(416)
            return
        application = self.applications.get(method)
        if application is None and method == "OPTIONS" and self.isForNode(request):
            self.answerOptions(request, transaction)
            return
        if application is None:
            application = self.fallback
        if application is None:
            self.reject(request, transaction)
            return
        application.handleRequest(request, transaction)

    def reject(self, request: Request, transaction: Any) -> None:
        """The error for a request no application handles."""
        allow = self._allowHeader()
        if request.method not in KNOWN_METHODS:
            self.counters.increment("rejected.not_implemented")
            transaction.respond(501, headers=[("Allow", allow)])
        elif self.isForNode(request):
            self.counters.increment("rejected.method_not_allowed")
            transaction.respond(405, headers=[("Allow", allow)])
        else:
            self.counters.increment("rejected.no_route")
            transaction.respond(404)

    def answerOptions(self, request: Request, transaction: Any) -> None:
        """RFC 3261 §11.2: 200 OK with Allow, Accept and Supported."""
        response: Response = transaction.createResponse(200)
        # the names are canonical and the response has none of them yet:
        # what four addHeader calls would do, in one step
        response.headers.extend([
            ("Allow", self._allowHeader()), ("Accept", ACCEPT), ("Supported", _SUPPORTED_HEADER),
            ("Accept-Language", "en"),
        ])
        transaction.respond(response)

    def handleAck(self, ack: Request, source: Address, transaction: Any) -> None:
        application = self.applications.get("ACK") or self.fallback
        if application is not None and hasattr(application, "handleAck"):
            application.handleAck(ack, source, transaction)
        else:
            self.counters.increment("dropped.ack")

    def handleStrayResponse(self, response: Response, source: Address) -> None:
        application = self.fallback
        if application is not None and hasattr(application, "handleStrayResponse"):
            application.handleStrayResponse(response, source)
        else:
            self.counters.increment("dropped.stray_response")
