# -*- test-case-name: tests.test_proxy,tests.test_routing_service -*-
"""
The routing service: a stateful proxy (RFC 3261 §16) that routes each new
request through documented hooks a subclass may override.

For every new request (other than REGISTER and OPTIONS for the node, which
other applications answer) L{RoutingService.handleRequest} runs the §16.3
checks (Max-Forwards, loops, Proxy-Require) and the §16.4 Route
processing, then calls, in order:

  1. C{allowRequest(request, source)}: C{True} to go on; C{False} (403),
     a status code or a L{Response} to refuse.  The default challenges
     dialog-creating requests from the node's own domains with a 407
     unless the source is trusted.
  2. C{route(request, source)}: a list of L{Target}s (or one), or a status
     code or L{Response} to answer with.  The default follows the route
     set, load-balances over a dispatcher set routed for the domain,
     looks local domains up in the location store, and otherwise sends
     to the Request-URI (RFC 3263 DNS for names).
  3. C{onResponse(request, response, target)} for every response a branch
     receives (inspect or edit it).
  4. C{onFailure(request, response, target)} when a branch fails (a final
     response >= 300, or a status code for a local failure: 408 timeout,
     503 unreachable): return new targets to try instead (call forwarding,
     failover) or C{None}.  The default fails over to the next member of
     the target's dispatcher set.

Hooks may return a value, a Deferred or be coroutines.
"""

from __future__ import annotations

import inspect
import ipaddress
from typing import Any, Callable, Optional, Union

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from voipgw.interfaces import ILocationStore, ISIPApplication
from voipgw.location.binding import Binding
from voipgw.routing.config import RoutingConfig
from voipgw.routing.proxy import Branch, Outcome, ProxyContext
from voipgw.routing.target import BRANCH_MARK, Target, addressOfURI, branchLoopHash, loopHash, uriTransport
from voipgw.sip.address import NameAddress, Via
from voipgw.sip.errors import SIPParseError
from voipgw.sip.message import Request, Response, responseTo
from voipgw.sip.uri import URI
from voipgw.stats import Counters
from voipgw.transport.address import Address

#: Requests that create dialogs: challenged and record-routed.
DIALOG_METHODS = frozenset(["INVITE", "SUBSCRIBE", "REFER", "NOTIFY"])
#: Out-of-dialog requests from our subscribers that must be authenticated.
CHALLENGED_METHODS = frozenset(["INVITE", "SUBSCRIBE", "REFER", "MESSAGE", "PUBLISH"])
#: Option tags a Proxy-Require may name.
SUPPORTED_PROXY_EXTENSIONS = frozenset()  # type: frozenset[str]

Decision = Union[bool, int, Response, None]

#: Parsed headers a forwarded copy shares with the request as received.
_SHARED_PARSED = ("Via", "From", "To", "Call-ID", "CSeq")
#: Hook results handled inline, without a Deferred.
_PLAIN = frozenset([bool, int, list, tuple, Response, Target])
_PENDING = object()


def _firstIndex(headers: list[tuple[str, str]], name: str) -> int:
    """Where the first C{name} header is (0 when there is none)."""
    for index, (n, _) in enumerate(headers):
        if n == name:
            return index
    return 0


def _firedResult(d: "defer.Deferred[Any]") -> Any:
    """The result of a Deferred that has fired (a Failure is consumed), or C{_PENDING}."""
    box: list[Any] = []

    def keep(value: Any) -> Any:
        box.append(value)
        return value

    d.addBoth(keep)
    if not box:
        return _PENDING
    value = box[0]
    if isinstance(value, Failure):
        d.addErrback(lambda _: None)
    return value


@implementer(ISIPApplication)
class RoutingService(Service):
    """
    The stateful proxy (service name C{"routing"}), the fallback
    application for every method no other application claims.

    @param config: a L{RoutingConfig}.
    @param transactions: the node's L{TransactionLayer}.
    @param transports: the node's transport service (listeners).
    @param dispatcher: the node's L{RequestDispatcher} (for its domains).
    @param location: an L{ILocationStore} (or a service with C{.store}).
    @param clock: C{IReactorTime} for timer C and the probes.
    @param authenticator: a L{voipgw.auth.DigestAuthenticator}, or C{None}
        to challenge nobody.
    @param subscribers: an L{ISubscriberStore} to tell unknown users (404)
        from unregistered ones (480), or C{None}.
    @param resolver: a L{voipgw.routing.dns.SIPResolver} for names, or C{None}.
    @param dispatcherSets: a L{voipgw.routing.dispatcher.DispatcherSets}.
    """

    name = "routing"
    methods = {"*"}
    log = Logger()

    def __init__(
        self,
        config: RoutingConfig,
        transactions: Any,
        transports: Any,
        dispatcher: Any,
        location: Any,
        clock: Any,
        authenticator: Any = None,
        subscribers: Any = None,
        resolver: Any = None,
        dispatcherSets: Any = None,
        counters: Optional[Counters] = None,
    ) -> None:
        self.config = config
        self.transactions = transactions
        self.transports = transports
        self.dispatcher = dispatcher
        if location is not None and not ILocationStore.providedBy(location) and hasattr(location, "store"):
            location = location.store
        self.location = location
        self.clock = clock
        self.authenticator = authenticator
        self.subscribers = subscribers
        self.resolver = resolver
        self.dispatcherSets = dispatcherSets
        self.counters = counters if counters is not None else getattr(dispatcher, "counters", None) or Counters()
        self.contexts: set[ProxyContext] = set()
        self._byRequest: dict[int, ProxyContext] = {}
        self._rr: dict[tuple[str, str, int], str] = {}
        self._trusted: dict[str, bool] = {}
        #: (listener name, host, port) -> our Via text (NUL for the branch), transport, host, port
        self._via: dict[tuple[str, str, int], tuple[str, str, str, Optional[int]]] = {}
        #: Route value -> its URI (read only)
        self._routes: dict[str, URI] = {}
        #: (contact, received, path) -> (contact URI, destination) of bindings
        self._bindings: dict[tuple[str, str, bool], tuple[URI, Optional[Address]]] = {}
        cls = type(self)
        #: hooks left as the stock ones need no call (onResponse) or may run inline
        self._onResponseHook = cls.onResponse is not RoutingService.onResponse
        self._stockLocation = cls.locationTargets is RoutingService.locationTargets
        self.counters.addGauge("routing.contexts", lambda: len(self.contexts))

    # -- service -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if self.dispatcherSets is not None:
            self.dispatcherSets.start()

    def stopService(self) -> None:
        super().stopService()
        if self.dispatcherSets is not None:
            self.dispatcherSets.stop()
        for context in list(self.contexts):
            context.abort()
        self.contexts.clear()
        self._byRequest.clear()

    # -- locality --------------------------------------------------------------

    @property
    def domains(self) -> set[str]:
        return getattr(self.dispatcher, "domains", set())

    def isLocalAddress(self, host: str, port: Optional[int]) -> bool:
        """True if C{host:port} is one of the node's listeners."""
        return self.transports.isLocal(host, port)

    def isLocalHost(self, host: str, port: Optional[int] = None) -> bool:
        """True for one of the node's domains or its own address."""
        return host.lower() in self.domains or self.isLocalAddress(host, port)

    def isTrusted(self, source: Address) -> bool:
        """True if C{source} is inside a C{[routing] trusted} network."""
        if not self.config.trusted:
            return False
        host = source.bareHost
        known = self._trusted.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                known = False
            else:
                known = any(address in network for network in self.config.trusted)
            if len(self._trusted) > 10_000:
                self._trusted.clear()
            self._trusted[host] = known
        return known

    # -- new requests ----------------------------------------------------------

    def handleRequest(self, request: Request, transaction: Any) -> None:
        """The transaction layer's entry point: §16.3 checks, §16.4, then the hooks."""
        counters = self.counters
        counters.increment("routing.requests")
        maxForwards = request.maxForwards
        if maxForwards is not None and maxForwards <= 0:
            counters.increment("routing.rejected.too_many_hops")
            transaction.respond(483)
            return
        vias = request.getHeaderValues("Via")
        if any(BRANCH_MARK in v for v in vias):
            if self._looped(request, vias):
                counters.increment("routing.rejected.loop")
                transaction.respond(482)
                return
        required = request.getHeaderValues("Proxy-Require")
        if required:
            unsupported = [r for r in required if r.lower() not in SUPPORTED_PROXY_EXTENSIONS]
            if unsupported:
                counters.increment("routing.rejected.bad_extension")
                transaction.respond(420, headers=[("Unsupported", ", ".join(unsupported))])
                return
        myHash = loopHash(request, vias[0])
        if not self.allowRelay(request, transaction.source):
            counters.increment("routing.rejected.relay")
            transaction.respond(403, "Forbidden (relaying denied)")
            return
        try:
            self.processRoutes(request)
        except SIPParseError as e:
            counters.increment("routing.rejected.bad_route")
            transaction.respond(400, f"Bad Request ({e.reason})")
            return
        if request.method == "INVITE":
            transaction.respond(100)
        source = transaction.source
        self._chain(
            lambda: self.allowRequest(request, source), self._allowed,
            request, transaction, myHash,
        )

    def _chain(self, call: Callable[[], Any], then: Callable[..., None], request: Request, transaction: Any, *args: Any) -> None:
        """Run a hook; continue with C{then(result, ...)} now or when its Deferred fires."""
        result = call()
        if result is None or result.__class__ in _PLAIN:
            then(result, request, transaction, *args)
            return
        if isinstance(result, defer.Deferred) and result.called:
            # fired already (an in-memory store): continue now
            fired = _firedResult(result)
            if fired is not _PENDING:
                if isinstance(fired, Failure):
                    self._hookFailed(fired, request, transaction)
                else:
                    then(fired, request, transaction, *args)
                return
        if inspect.isawaitable(result) and not isinstance(result, defer.Deferred):
            result = defer.ensureDeferred(result)  # type: ignore[arg-type]
        if isinstance(result, defer.Deferred):
            result.addCallback(then, request, transaction, *args)
            result.addErrback(self._hookFailed, request, transaction)
        else:
            then(result, request, transaction, *args)

    def _hookFailed(self, failure: Failure, request: Request, transaction: Any) -> None:
        self.counters.increment("routing.errors")
        self.log.failure("routing {method} failed", failure, method=request.method)
        if transaction.state in ("trying", "proceeding"):
            transaction.respond(500)

    def _answer(self, decision: Union[int, Response], transaction: Any) -> None:
        if isinstance(decision, Response):
            if decision.code > 100:
                to = decision.getHeader("To")
                if to is not None and ";tag=" not in to.replace(" ", "").lower():
                    decision.setHeader("To", f"{to};tag={transaction.toTag}")
            transaction.respond(decision)
        else:
            transaction.respond(int(decision))

    def _allowed(self, decision: Decision, request: Request, transaction: Any, myHash: str) -> None:
        if decision is False:
            self.counters.increment("routing.rejected.forbidden")
            transaction.respond(403)
            return
        if decision is not True and decision is not None:
            self.counters.increment("routing.rejected.by_policy")
            self._answer(decision, transaction)  # type: ignore[arg-type]
            return
        if transaction.cancelled:
            transaction.respond(487)
            return
        source = transaction.source
        self._chain(lambda: self.route(request, source), self._routed, request, transaction, myHash)

    def _routed(self, decision: Any, request: Request, transaction: Any, myHash: str) -> None:
        if isinstance(decision, Target):
            decision = [decision]
        if isinstance(decision, (int, Response)):
            self._answer(decision, transaction)
            return
        if not decision:
            self.counters.increment("routing.rejected.no_route")
            transaction.respond(404)
            return
        if transaction.state not in ("trying", "proceeding"):
            return
        if transaction.cancelled:
            transaction.respond(487)
            return
        context = ProxyContext(self, request, transaction, transaction.source, myHash)
        self.contexts.add(context)
        self._byRequest[id(request)] = context
        context.start(list(decision))

    def contextFor(self, request: Request) -> ProxyContext:
        """The response context proxying C{request} (for hooks that look at the other branches)."""
        return self._byRequest[id(request)]

    def contextDone(self, context: ProxyContext) -> None:
        self.contexts.discard(context)
        self._byRequest.pop(id(context.request), None)

    # -- RFC 3261 §16.3 step 4 and §16.4 -----------------------------------------

    def _looped(self, request: Request, vias: list[str]) -> bool:
        """A Via of ours whose loop hash matches this request: a loop, not a spiral."""
        for index, via in enumerate(request.vias):
            mine = branchLoopHash(via.branch)
            if mine is None or not self.isLocalAddress(via.host, via.port):
                continue
            below = vias[index + 1] if index + 1 < len(vias) else ""
            if loopHash(request, below) == mine:
                return True
        return False

    def processRoutes(self, request: Request) -> None:
        """
        §16.4: undo a strict router's rewrite (a Request-URI that is our
        Record-Route URI takes the last Route), then pop the Route entries
        naming this node.
        """
        uri = request.requestURI
        if uri.isSIP and uri.user is None and "lr" in uri.params and self.isLocalAddress(uri.host, uri.port):
            routes = request.getHeaderValues("Route")
            if routes:
                request.requestURI = NameAddress.parse(routes[-1]).uri.copy()  # type: ignore[union-attr]
                request.setHeaderValues("Route", routes[:-1])
        routes = request.getHeaderValues("Route")
        if not routes:
            return
        ours = 0
        for value in routes:
            route = self._routeURI(value)
            if route is None or not route.isSIP or not self.isLocalHost(route.host, route.port):
                break
            ours += 1
        if ours:
            request.setHeaderValues("Route", routes[ours:])

    def _routeURI(self, value: str) -> Optional[URI]:
        """The URI of a Route value (parsed once per distinct value: ours come back in every dialog)."""
        cache = self._routes
        uri = cache.get(value)
        if uri is None:
            uri = NameAddress.parse(value).uri
            if uri is not None and len(value) <= 512:
                if len(cache) >= 4096:
                    cache.clear()
                cache[value] = uri.copy()
            return uri
        return uri

    def shouldRecordRoute(self, request: Request) -> bool:
        if not self.config.recordRoute or request.method not in DIALOG_METHODS:
            return False
        try:
            return request.toAddress.tag is None
        except SIPParseError:
            return False

    def _rrValue(self, listener: Any) -> str:
        key = (listener.name, listener.host, listener.port)
        value = self._rr.get(key)
        if value is None:
            host = f"[{listener.host}]" if ":" in listener.host else listener.host
            transport = "" if listener.name == "udp" else f";transport={listener.name}"
            value = self._rr[key] = f"<sip:{host}:{listener.port}{transport};lr>"
        return value

    def recordRouteValues(self, context: ProxyContext, destination: Address) -> list[str]:
        """Our Record-Route values for a copy going to C{destination}: two when it leaves on another listener."""
        transports = self.transports
        outbound = transports.listenerFor(destination.transport, destination.bareHost)
        source = context.source
        inbound = transports.listenerFor(source.transport, source.bareHost)
        values = []
        if outbound is not None:
            values.append(self._rrValue(outbound))
        if inbound is not None and (outbound is None or self._rrValue(inbound) != values[0]):
            values.append(self._rrValue(inbound))
        return values

    def recordRoute(self, context: ProxyContext, request: Request, destination: Address) -> None:
        """Insert our Record-Route: two when the request leaves on another listener."""
        if not context.recordRoute:
            return
        values = self.recordRouteValues(context, destination)
        existing = request.getHeaderValues("Record-Route")
        request.setHeaderValues("Record-Route", values + existing)

    def viaFor(self, destination: Address, branch: str) -> Optional[tuple[str, Via]]:
        """
        Our Via (text and parsed) for a request leaving towards
        C{destination}, as the transaction layer's C{localVia} makes it, or
        C{None} without a listener.
        """
        listener = self.transports.listenerFor(destination.transport, destination.bareHost)
        if listener is None:
            return None
        key = (listener.name, listener.host, listener.port)
        known = self._via.get(key)
        if known is None:
            via = self.transactions.localVia(destination, branch="\x00")
            text = str(via)
            if text.count("\x00") != 1 or list(via.params) != ["branch", "rport"] or via.params["rport"] is not None:
                via = self.transactions.localVia(destination, branch=branch)
                return str(via), via
            known = self._via[key] = (text, via.transport, via.host, via.port)
        text, transport, host, port = known
        return text.replace("\x00", branch), Via(transport, host, port, {"branch": branch, "rport": None})

    # -- forwarding (§16.6) ------------------------------------------------------

    def prepareForward(self, context: ProxyContext, target: Target) -> tuple[Request, URI]:
        """
        The copy of the request for C{target} (§16.6 steps 1-6) and the URI
        naming its next hop.
        """
        original = context.request
        maxForwards = original.maxForwards
        line = ("Max-Forwards", str(maxForwards - 1 if maxForwards is not None else 70))
        headers = original.headers
        if maxForwards is None:
            headers = headers + [line]
        else:
            headers = [line if h[0] == "Max-Forwards" else h for h in headers]
        request = Request(original.method, target.uri.copy(), headers, original.body)
        # the headers parsed already stay parsed (read-only) in the copy
        cache = original._cache
        for name in _SHARED_PARSED:
            if name in cache:
                request._cache[name] = cache[name]
        if target.routes:
            request.setHeaderValues("Route", list(target.routes) + request.getHeaderValues("Route"))
        return request, self.nextHop(request, target)

    def nextHop(self, request: Request, target: Optional[Target] = None) -> URI:
        """§16.6 steps 6-7: the top Route (rewriting for a strict router), else the Request-URI."""
        if target is not None and target.hop is not None:
            return target.hop
        routes = request.getHeaderValues("Route")
        if not routes:
            return request.requestURI
        top = NameAddress.parse(routes[0]).uri
        assert top is not None
        if "lr" in top.params:
            return top
        # strict router: it gets the Request-URI as its last Route
        request.setHeaderValues("Route", routes[1:] + [f"<{request.requestURI}>"])
        request.requestURI = top.copy()
        return top

    def resolveBranch(self, branch: Branch) -> None:
        """Find the branch's next hop addresses and send (DNS when the hop is a name)."""
        target = branch.target
        if target.destination is not None:
            branch.send([target.destination])
            return
        hop = branch.hop
        address = addressOfURI(hop)
        if address is not None:
            branch.send([address])
            return
        d = self.resolveURI(hop)

        def resolved(addresses: list[Address]) -> None:
            if branch.state == Branch.PENDING:
                branch.send(addresses)

        def failed(failure: Failure) -> None:
            self.counters.increment("routing.dns_failures")
            self.log.debug("cannot resolve {hop}: {why}", hop=str(hop), why=failure.getErrorMessage())
            branch.finish(Outcome(503, None, "Service Unavailable (cannot resolve next hop)"))

        d.addCallbacks(resolved, failed)

    def resolveURI(self, uri: URI) -> "defer.Deferred[list[Address]]":
        """The addresses of C{uri} in the order to try them (RFC 3263)."""
        address = addressOfURI(uri)
        if address is not None:
            return defer.succeed([address])
        if self.resolver is None:
            return defer.fail(LookupError(f"no DNS resolver configured for {uri.host}"))
        return self.resolver.resolve(uri)

    # -- hooks -----------------------------------------------------------------

    def allowRelay(self, request: Request, source: Address) -> bool:
        """
        Whether C{request} may leave towards a target that is not ours (no
        open relay).  Default: yes from trusted networks, for requests whose
        top Route is ours (record-routed dialogs), for requests whose
        Request-URI is local, and for out-of-dialog requests of the
        challenged methods from our domains (L{allowRequest} then
        authenticates them).  Without an authenticator, yes.
        """
        if self.authenticator is None or self.isTrusted(source):
            return True
        uri = request.requestURI
        if uri.isSIP and self.isLocalHost(uri.host, uri.port):
            return True
        routes = request.routes
        if routes:
            top = routes[0].uri
            if top is not None and top.isSIP and self.isLocalAddress(top.host, top.port):
                return True
        if request.method in CHALLENGED_METHODS and request.toAddress.tag is None:
            fromURI = request.fromAddress.uri
            return fromURI is not None and fromURI.isSIP and fromURI.host.lower() in self.domains
        return False

    def allowRequest(self, request: Request, source: Address) -> Any:
        """
        Whether to serve C{request}: C{True}, C{False} (403), a status code
        or a L{Response}.  Default: out-of-dialog INVITE, SUBSCRIBE, REFER,
        MESSAGE and PUBLISH whose From is one of our domains are challenged
        (407) unless C{source} is trusted; requests from other domains may
        only reach our domains (no open relay).  Without an authenticator
        everything is allowed.
        """
        if self.authenticator is None or request.method not in CHALLENGED_METHODS:
            return True
        if request.toAddress.tag is not None or self.isTrusted(source):
            return True
        fromURI = request.fromAddress.uri
        realm = fromURI.host.lower() if fromURI is not None and fromURI.isSIP else ""
        if realm not in self.domains:
            uri = request.requestURI
            if uri.isSIP and self.isLocalHost(uri.host, uri.port):
                return True
            self.counters.increment("routing.rejected.relay")
            return responseTo(request, 403, "Forbidden (relaying denied)")
        return self.authenticate(request, source, realm)

    async def authenticate(self, request: Request, source: Address, realm: str) -> Decision:
        """Check the caller's credentials (RFC 3261 §22.3); the 407 when missing or wrong."""
        try:
            result = await self.authenticator.authenticate(request, realm, proxy=True, source=source)
        except Exception:
            self.counters.increment("routing.auth_unavailable")
            self.log.failure("authentication failed for realm {realm}", realm=realm)
            response = responseTo(request, 503, "Service Unavailable (subscriber store unavailable)")
            response.addHeader("Retry-After", str(self.config.retryAfter))
            return response
        if result.ok:
            self.counters.increment("routing.auth_ok")
            self._dropCredentials(request, realm)
            return True
        self.counters.increment(f"routing.auth_{result.reason or 'failed'}")
        return result.response or 403

    @staticmethod
    def _dropCredentials(request: Request, realm: str) -> None:
        """Remove the Proxy-Authorization for our realm (others pass on, §22.3)."""
        values = request.getHeaderValues("Proxy-Authorization")
        kept = [v for v in values if f'realm="{realm}"' not in v.lower().replace(" ", "") and f"realm={realm}" not in v.lower().replace(" ", "")]
        if len(kept) != len(values):
            request.setHeaderValues("Proxy-Authorization", kept)

    def route(self, request: Request, source: Address) -> Any:
        """
        Where C{request} goes: targets, or a status code / L{Response}.

        Default: a request with a Route set goes to its Request-URI along
        that set; a Request-URI domain routed to a dispatcher set is
        load-balanced over it; one of our domains is looked up in the
        location store; anything else is sent to the Request-URI.
        """
        uri = request.requestURI
        if request.getHeader("Route") is not None:
            return [Target(uri)]
        if not uri.isSIP:
            setName = self._setFor("*")
            return self.dispatcherTargets(setName, request) if setName else 404
        host = uri.host.lower()
        local = self.isLocalHost(host, uri.port)
        setName = self._setFor(host) or (None if local else self._setFor("*"))
        if setName is not None:
            return self.dispatcherTargets(setName, request)
        if local:
            if uri.user is None:
                return 404
            if self._stockLocation:
                # an in-memory store answers at once: no coroutine, no Deferred
                lookup = self._startLookup(request)
                if isinstance(lookup, defer.Deferred) and lookup.called:
                    bindings = _firedResult(lookup)
                    if bindings is not _PENDING and not isinstance(bindings, Failure) and bindings:
                        return self._bindingTargets(bindings)
                    if bindings is not _PENDING:
                        lookup = defer.fail(bindings) if isinstance(bindings, Failure) else defer.succeed(bindings)
                return self._locationTargetsFrom(request, lookup)
            return self.locationTargets(request)
        return [Target(uri)]

    def onResponse(self, request: Request, response: Response, target: Target) -> None:
        """Called with every response a branch receives, before it is relayed or kept."""

    def onFailure(self, request: Request, response: Union[Response, int], target: Target) -> Optional[list[Target]]:
        """
        A branch failed: C{response} is the final response, or a status code
        for a local failure (408 no answer, 503 unreachable).  Return
        targets to try instead, or C{None}.  Default: fail over to the next
        member of a dispatcher set on a timeout, an unreachable member or
        one of the C{failover_codes}.
        """
        code = response if isinstance(response, int) else response.code
        local = isinstance(response, int)
        if target.setName is not None and local and code in (408, 503) and self.dispatcherSets is not None:
            self.dispatcherSets.reportFailure(target.setName, target.hop)
        if target.failover and (local or code in self.config.failoverCodes):
            self.counters.increment("routing.failover")
            following = target.failover[0]
            following.failover = target.failover[1:]
            return [following]
        return None

    # -- routing helpers for hooks -----------------------------------------------

    def _setFor(self, domain: str) -> Optional[str]:
        for name, domains in self.config.dispatcherRoutes.items():
            if domain in domains:
                return name
        return None

    def dispatcherTargets(self, setName: str, request: Request) -> Any:
        """One target on the member the set's algorithm picks, the other live members as failover."""
        if self.dispatcherSets is None:
            return 404
        members = self.dispatcherSets.select(setName, request)
        if not members:
            self.counters.increment("routing.dispatcher_no_member")
            response = responseTo(request, 503, "Service Unavailable (no destination available)")
            response.addHeader("Retry-After", str(self.config.retryAfter))
            return response
        uri = request.requestURI
        targets = [Target(uri, hop=member.uri, setName=setName) for member in members]
        first = targets[0]
        first.failover = targets[1:]
        return [first]

    async def locationTargets(self, request: Request) -> Any:
        """
        The registered contacts of the Request-URI's AOR: 503 with
        Retry-After when the store fails, 404 for an unknown user, 480 for
        one with no binding.
        """
        return await self._locationTargetsFrom(request, self._startLookup(request))

    def _startLookup(self, request: Request) -> Any:
        try:
            return self.location.lookup(request.requestURI.aor(), self.clock.seconds())
        except Exception as e:
            return defer.fail(e)

    async def _locationTargetsFrom(self, request: Request, lookup: Any) -> Any:
        uri = request.requestURI
        aor = uri.aor()
        try:
            bindings = await lookup
        except Exception as e:
            self.counters.increment("routing.location_unavailable")
            self.log.warn("location lookup for {aor} failed: {error}", aor=aor, error=str(e))
            response = responseTo(request, 503, "Service Unavailable (location unavailable)")
            response.addHeader("Retry-After", str(self.config.retryAfter))
            return response
        if not bindings:
            if self.subscribers is not None and uri.user is not None:
                try:
                    subscriber = await self.subscribers.getSubscriber(uri.user, uri.host.lower())
                except Exception:
                    subscriber = True
                if subscriber is None:
                    self.counters.increment("routing.rejected.unknown_user")
                    return 404
            self.counters.increment("routing.rejected.not_registered")
            return 480
        return self._bindingTargets(bindings)

    def _bindingTargets(self, bindings: Any) -> Any:
        targets = []
        for binding in bindings:
            target = self.bindingTarget(binding)
            if target is not None:
                targets.append(target)
        return targets or 480

    def bindingTarget(self, binding: Binding) -> Optional[Target]:
        """A contact binding as a target: Path as Route, C{received} as the destination."""
        key = (binding.contact, binding.received, bool(binding.path))
        known = self._bindings.get(key)
        if known is not None:
            return Target(known[0].copy(), destination=known[1], routes=tuple(binding.path), q=binding.q)
        try:
            contact = binding.contact.strip()
            uri = NameAddress.parse(contact).uri if contact.startswith("<") or '"' in contact else URI.parse(contact)
            assert uri is not None
            destination = None
            if binding.received and not binding.path:
                received = URI.parse(binding.received)
                if "transport" not in received.params and uri.transport:
                    received.params["transport"] = uri.transport
                destination = addressOfURI(received)
        except (SIPParseError, AssertionError):
            self.counters.increment("routing.bad_bindings")
            self.log.warn("unusable binding {contact} of {aor}", contact=binding.contact, aor=binding.aor)
            return None
        if len(self._bindings) >= 10_000:
            self._bindings.clear()
        self._bindings[key] = (uri.copy(), destination)
        return Target(uri, destination=destination, routes=tuple(binding.path), q=binding.q)

    # -- ACK for 2xx and stray responses ---------------------------------------

    def handleAck(self, ack: Request, source: Address, transaction: Any) -> None:
        """An ACK no transaction absorbed (ACK for a 2xx): forward it statelessly along its route set."""
        counters = self.counters
        try:
            maxForwards = ack.maxForwards
            if maxForwards is not None and maxForwards <= 0:
                counters.increment("routing.dropped.ack_hops")
                return
            myHash = loopHash(ack, ack.getHeaderValues("Via")[0])
            self.processRoutes(ack)
            uri = ack.requestURI
            if ack.getHeader("Route") is None and uri.isSIP and self.isLocalHost(uri.host, uri.port):
                counters.increment("routing.dropped.ack_no_route")
                return
            line = ("Max-Forwards", str(maxForwards - 1 if maxForwards is not None else 70))
            if maxForwards is None:
                ack.headers.append(line)
            else:
                ack.headers = [line if h[0] == "Max-Forwards" else h for h in ack.headers]
            ack._cache.pop("Max-Forwards", None)
            hop = self.nextHop(ack)
        except SIPParseError:
            counters.increment("routing.dropped.ack_bad")
            return
        branch = f"{BRANCH_MARK}{myHash}.0"

        def send(addresses: list[Address]) -> None:
            destination = addresses[0]
            via = self.viaFor(destination, branch)
            if via is None:
                counters.increment("routing.dropped.ack_no_listener")
                return
            ack.headers.insert(_firstIndex(ack.headers, "Via"), ("Via", via[0]))
            ack._cache.pop("Via", None)
            counters.increment("routing.ack_forwarded")
            self.transactions.sendStateless(ack, destination)

        address = addressOfURI(hop)
        if address is not None:
            send([address])
            return
        d = self.resolveURI(hop)
        d.addCallbacks(send, lambda f: counters.increment("routing.dropped.ack_unresolvable"))

    def handleStrayResponse(self, response: Response, source: Address) -> None:
        """
        A response matching no client transaction: a 2xx to an INVITE we
        forwarded is relayed statelessly by its next Via (§16.7 step 3 for
        2xx retransmissions); anything else is dropped.
        """
        try:
            vias = response.vias
            top = vias[0]
            ours = top.branch is not None and top.branch.startswith(BRANCH_MARK) and self.isLocalAddress(top.host, top.port)
            if not ours or len(vias) < 2:
                self.counters.increment("routing.dropped.stray_response")
                return
            if not (200 <= response.code < 300 and response.cseq.method == "INVITE"):
                self.counters.increment("routing.dropped.stray_response")
                return
        except (SIPParseError, IndexError):
            self.counters.increment("routing.dropped.stray_response")
            return
        response.setHeaderValues("Via", response.getHeaderValues("Via")[1:])
        self.counters.increment("routing.stray_2xx_forwarded")
        self.transactions.sendStateless(response)


def routingServiceFromConfig(
    config: RoutingConfig,
    transactions: Any,
    transports: Any,
    dispatcher: Any,
    location: Any,
    clock: Any,
    authenticator: Any = None,
    subscribers: Any = None,
    resolver: Any = None,
    counters: Optional[Counters] = None,
    dispatcherDatabase: Any = None,
) -> RoutingService:
    """
    Build the C{routing} service (the configured application class, or
    L{RoutingService}) with its dispatcher sets.  No I/O happens until it
    starts.  Register it with the node's dispatcher and add it to the tree.
    C{dispatcherDatabase} (a L{voipgw.db.database.Database}) adds the sets
    of its C{dispatcher} table, read when the service starts and on reload.
    """
    from voipgw.routing.config import loadApplicationClass
    from voipgw.routing.dispatcher import DispatcherSets

    cls = loadApplicationClass(config.application) if config.application else RoutingService
    sets = DispatcherSets.fromConfig(config, transactions, clock, resolver=resolver,
                                     counters=counters if counters is not None else getattr(dispatcher, "counters", None),
                                     database=dispatcherDatabase)
    return cls(
        config, transactions, transports, dispatcher, location, clock,
        authenticator=authenticator, subscribers=subscribers, resolver=resolver,
        dispatcherSets=sets, counters=counters,
    )
