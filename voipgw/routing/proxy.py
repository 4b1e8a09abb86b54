# -*- test-case-name: tests.test_proxy -*-
"""
The stateful proxy core (RFC 3261 §16): one L{ProxyContext} per proxied
request (the "response context" of §16.7) holding one L{Branch} per
forwarded copy.

The context forwards provisional and 2xx responses at once, collects the
other final responses and, once every branch is done and no target is
left (serial groups, failover), sends the best one (§16.7 steps 5-7).
Branches of an INVITE run timer C on the service's clock; CANCELs go to
pending branches when a 2xx or 6xx arrives or the caller cancels.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

from twisted.logger import Logger

from voipgw.sip.address import Via
from voipgw.sip.grammar import splitCommas
from voipgw.sip.message import Message, Request, Response
from voipgw.transaction.client import buildCancel
from voipgw.transport.address import Address
from voipgw.routing.target import BRANCH_MARK, Target

if TYPE_CHECKING:
    from voipgw.routing.service import RoutingService

#: 4xx responses preferred when the best class is 4xx (§16.7 step 6).
PREFERRED_4XX = (401, 407, 415, 420, 484)
#: Response headers merged from every challenge (§16.7 step 7).
CHALLENGE_HEADERS = ("WWW-Authenticate", "Proxy-Authenticate")


class _Ignore:
    """The client transaction user of CANCELs we send: nothing to do."""

    def responseReceived(self, response: Response, transaction: Any) -> None:
        pass

    def timedOut(self, transaction: Any) -> None:
        pass

    def transportFailed(self, transaction: Any, reason: str) -> None:
        pass


IGNORE = _Ignore()


class Outcome:
    """A branch's final result: a received response or one made up locally."""

    __slots__ = ("code", "response", "reason")

    def __init__(self, code: int, response: Optional[Response] = None, reason: Optional[str] = None) -> None:
        self.code = code
        self.response = response
        self.reason = reason

    @property
    def local(self) -> bool:
        return self.response is None


class Branch:
    """
    One forwarded copy of the request: the client transaction user.

    C{addresses} are the next hops to try in order (RFC 3263 failover): a
    timeout, a transport failure or a 503 moves to the next one.
    """

    log = Logger()

    PENDING, DONE = "pending", "done"

    def __init__(self, context: "ProxyContext", target: Target, request: Request) -> None:
        self.context = context
        self.target = target
        #: the request to forward, without our Record-Route and Via
        self.base = request
        #: what was sent last (with Record-Route and Via)
        self.request = request
        self.addresses: list[Address] = []
        #: the URI whose address is the next hop (top Route, or the Request-URI)
        self.hop: Any = None
        self.transaction: Any = None
        self.destination: Optional[Address] = None
        self.state = self.PENDING
        self.provisional = False
        self.cancelWanted = False
        self.cancelSent = False
        self.cancelledByTimerC = False
        self.outcome: Optional[Outcome] = None
        self._timerC: Any = None
        self._guard: Any = None

    # -- sending -----------------------------------------------------------

    def send(self, addresses: list[Address]) -> None:
        self.addresses = list(addresses)
        self._sendNext()

    def _sendNext(self) -> None:
        context = self.context
        service = context.service
        if not self.addresses:
            self.finish(Outcome(503, None, "Service Unavailable (no reachable next hop)"))
            return
        destination = self.addresses.pop(0)
        self.destination = destination
        via = service.viaFor(destination, context.makeBranch())
        if via is None:
            self.log.debug("no listener for {destination}", destination=str(destination))
            self._sendNext()
            return
        recordRoutes = service.recordRouteValues(context, destination) if context.recordRoute else ()
        request = self.request = forwardCopy(self.base, via[0], recordRoutes, via[1])
        self.transaction = service.transactions.request(request, destination, self, addVia=False)
        context.track(self.transaction)
        if context.isInvite and self.state == self.PENDING:
            self.restartTimerC()

    # -- the client transaction user ----------------------------------------

    def responseReceived(self, response: Response, transaction: Any) -> None:
        if transaction is not self.transaction:
            if 200 <= response.code < 300:
                self.context.forward2xx(self, response)
            return
        code = response.code
        context = self.context
        if context.service._onResponseHook:
            try:
                context.service.onResponse(context.request, response, self.target)
            except Exception:
                self.log.failure("onResponse hook failed")
        if code < 200:
            if self.state != self.PENDING:
                if self.cancelWanted and not self.cancelSent:
                    self._sendCancel()
                return
            self.provisional = True
            if self.request.method == "INVITE":
                self.restartTimerC()
            if self.cancelWanted:
                self._sendCancel()
                return
            if code > 100:
                self.context.forwardProvisional(self, response)
            return
        if 200 <= code < 300:
            self._stopTimers()
            self.state = self.DONE
            self.base = None  # type: ignore[assignment]  # nothing more to send from it
            self.context.forward2xx(self, response)
            return
        if code == 503 and self.addresses and self.state == self.PENDING and not self.cancelWanted:
            self._stopTimers()
            self._sendNext()
            return
        if self.state != self.PENDING:
            return
        if code == 487 and self.cancelledByTimerC:
            self.finish(Outcome(480, None, "Temporarily Unavailable (no answer)"))
            return
        self.finish(Outcome(code, response))

    def timedOut(self, transaction: Any) -> None:
        if transaction is not self.transaction or self.state != self.PENDING:
            return
        self.context.service.counters.increment("routing.branch_timeouts")
        if self.addresses and not self.cancelWanted:
            self._sendNext()
            return
        self.finish(Outcome(408, None, "Request Timeout"))

    def transportFailed(self, transaction: Any, reason: str) -> None:
        if transaction is not self.transaction or self.state != self.PENDING:
            return
        self.context.service.counters.increment("routing.branch_unreachable")
        self.log.debug("next hop {destination} unreachable: {reason}", destination=str(self.destination), reason=reason)
        if self.addresses and not self.cancelWanted:
            self._sendNext()
            return
        self.finish(Outcome(503, None, "Service Unavailable (next hop unreachable)"))

    # -- ending --------------------------------------------------------------

    def finish(self, outcome: Outcome) -> None:
        if self.state != self.PENDING:
            return
        self.state = self.DONE
        self.outcome = outcome
        self._stopTimers()
        self.base = None  # type: ignore[assignment]  # nothing more to send from it
        self.context.branchFinished(self)

    def cancel(self) -> None:
        """Cancel this branch (RFC 3261 §16.10): now if it rang, else at its first provisional."""
        if self.request.method != "INVITE" or self.cancelWanted:
            return
        self.cancelWanted = True
        if self.transaction is None:
            # still resolving: nothing sent yet
            self.finish(Outcome(487, None, "Request Terminated"))
            return
        if self.provisional:
            self._sendCancel()
        elif self.state == self.PENDING:
            # §9.1: no CANCEL before a provisional; the branch is over for
            # the caller, and a CANCEL follows a late provisional.
            self.finish(Outcome(487, None, "Request Terminated"))

    def _sendCancel(self) -> None:
        if self.cancelSent or self.transaction is None or self.destination is None:
            return
        self.cancelSent = True
        service = self.context.service
        service.counters.increment("routing.cancels_sent")
        cancel = buildCancel(self.transaction.request)
        service.transactions.request(cancel, self.destination, IGNORE, addVia=False)
        if self.state == self.PENDING:
            # a callee that ignores the CANCEL must not keep us forever
            self._cancelTimer("_timerC")
            self._guard = service.clock.callLater(service.transactions.timers.B, self._guardExpired)

    def _guardExpired(self) -> None:
        self._guard = None
        if self.state != self.PENDING:
            return
        if self.transaction is not None:
            self.transaction.terminate()
        self.finish(Outcome(480 if self.cancelledByTimerC else 487, None))

    def restartTimerC(self) -> None:
        service = self.context.service
        call = self._timerC
        if call is not None and call.active():
            # each provisional restarts it: moving a DelayedCall later
            # costs the reactor no new call and no heap operation
            call.reset(service.config.timerC)
            return
        self._timerC = service.clock.callLater(service.config.timerC, self._timerCExpired)

    def _timerCExpired(self) -> None:
        self._timerC = None
        if self.state != self.PENDING:
            return
        service = self.context.service
        service.counters.increment("routing.timer_c")
        if self.provisional:
            self.cancelledByTimerC = True
            self.cancelWanted = True
            self._sendCancel()
            return
        # §16.8: as if the transaction received a 408
        if self.transaction is not None:
            self.transaction.terminate()
        self.finish(Outcome(408, None, "Request Timeout"))

    def _cancelTimer(self, name: str) -> None:
        call = getattr(self, name)
        if call is not None and call.active():
            call.cancel()
        setattr(self, name, None)

    def _stopTimers(self) -> None:
        call = self._timerC
        if call is not None:
            self._timerC = None
            if call.active():
                call.cancel()
        call = self._guard
        if call is not None:
            self._guard = None
            if call.active():
                call.cancel()


class ProxyContext:
    """
    The response context of one proxied request (RFC 3261 §16.7).

    @ivar request: the request as received (after Route processing).
    @ivar transaction: its server transaction.
    @ivar source: where it came from.
    """

    log = Logger()

    def __init__(self, service: "RoutingService", request: Request, transaction: Any, source: Address, loopHash: str) -> None:
        self.service = service
        self.request = request
        self.transaction = transaction
        self.source = source
        self.loopHash = loopHash
        self.isInvite = request.method == "INVITE"
        self.branches: list[Branch] = []
        self.groups: list[list[Target]] = []
        self.finalSent = False
        self.got2xx = False
        self.got6xx = False
        self.cancelled = False
        self.done = False
        self.recordRoute = service.shouldRecordRoute(request)
        #: Transactions of this context not yet terminated (see L{track}).
        self._live = 0
        self._releasing = False
        if self.isInvite:
            transaction.onCancel(self._callerCancelled)
        transaction.onFailure(self._serverFailed)
        self.track(transaction)

    def track(self, transaction: Any) -> None:
        """
        Count C{transaction} (the server transaction, or a branch's client
        transaction) as live until it terminates.  Once the context is done
        and none is live, L{_release} breaks the context's reference cycles
        (context -> branches -> context, branch <-> client transaction), so
        a finished call is freed by reference counting at once instead of
        waiting, with every object it holds, for a full garbage collection.
        """
        if transaction is None or transaction.state == transaction.TERMINATED:
            return
        self._live += 1
        transaction.onTerminate(self._transactionEnded)

    def _transactionEnded(self, transaction: Any) -> None:
        self._live -= 1
        self._releaseWhenIdle()

    def _releaseWhenIdle(self) -> None:
        if self._live == 0 and self.done and not self._releasing:
            # on the next turn: the callbacks of the transaction that just
            # ended (a timeout, a failover to the next address) run first
            self._releasing = True
            self.service.clock.callLater(0, self._release)

    def _release(self) -> None:
        self._releasing = False
        if self._live or not self.done:
            return  # a failover started another transaction
        for branch in self.branches:
            branch.transaction = None
        self.branches = []
        self.groups = []

    @property
    def vias(self) -> list[str]:
        """The Via values of the request as received."""
        return self.request.getHeaderValues("Via")

    def makeBranch(self) -> str:
        return f"{BRANCH_MARK}{self.loopHash}.{os.urandom(5).hex()}"

    # -- starting ----------------------------------------------------------

    def start(self, targets: list[Target]) -> None:
        """Fork to C{targets} (parallel, or in q-value groups when serial)."""
        if self.service.config.forkMode == "serial" and len(targets) > 1:
            ordered = sorted(targets, key=lambda t: -t.q)
            groups: list[list[Target]] = []
            for target in ordered:
                if groups and groups[-1][0].q == target.q:
                    groups[-1].append(target)
                else:
                    groups.append([target])
            self.groups = groups[1:]
            targets = groups[0]
        for target in targets:
            self.addBranch(target)

    def addBranch(self, target: Target) -> Branch:
        service = self.service
        request, hop = service.prepareForward(self, target)
        branch = Branch(self, target, request)
        branch.hop = hop
        self.branches.append(branch)
        service.counters.increment("routing.branches")
        service.resolveBranch(branch)
        return branch

    # -- responses -----------------------------------------------------------

    def _relay(self, response: Response) -> None:
        """Pop our Via and send the response upstream through the server transaction."""
        popTopVia(response)
        if self.transaction.state == "terminated":
            if 200 <= response.code < 300:
                self.service.transactions.sendStateless(response)
            return
        self.transaction.respond(response)

    def forwardProvisional(self, branch: Branch, response: Response) -> None:
        if self.finalSent or self.cancelled:
            return
        self._relay(response)

    def forward2xx(self, branch: Branch, response: Response) -> None:
        """Every 2xx goes upstream at once (§16.7 step 5), retransmissions too."""
        self.got2xx = True
        self.service.counters.increment("routing.forwarded_2xx")
        first = not self.finalSent
        self.finalSent = True
        self._relay(response)
        if first:
            self.groups = []
            if self.isInvite:
                self._cancelPending(exclude=branch)
            self._checkDone()

    def branchFinished(self, branch: Branch) -> None:
        outcome = branch.outcome
        assert outcome is not None
        code = outcome.code
        if code >= 600:
            self.got6xx = True
            self.groups = []
            if self.isInvite:
                self._cancelPending(exclude=branch)
        elif not (self.finalSent or self.cancelled or self.got6xx):
            try:
                more = self.service.onFailure(self.request, outcome.response or code, branch.target)
            except Exception:
                self.log.failure("onFailure hook failed")
                more = None
            if more:
                branch.outcome = None  # replaced by what follows
                for target in more:
                    self.addBranch(target)
        self._checkDone()

    def _checkDone(self) -> None:
        if self.done:
            return
        if any(b.state == Branch.PENDING for b in self.branches):
            return
        if self.groups and not (self.finalSent or self.cancelled or self.got6xx):
            group = self.groups.pop(0)
            for target in group:
                self.addBranch(target)
            self._checkDone()
            return
        self.done = True
        # the caller's CANCEL and a failure of the server transaction no
        # longer concern this context: let the transaction forget it
        self.transaction.removeCallbacks(self._callerCancelled, self._serverFailed)
        self.service.contextDone(self)
        if not self.finalSent:
            self.finalSent = True
            self._sendBest()
        self._releaseWhenIdle()

    def _sendBest(self) -> None:
        outcomes = [b.outcome for b in self.branches if b.outcome is not None]
        response = self.bestResponse(outcomes)
        self.service.counters.increment(f"routing.final.{response.code // 100}xx")
        if self.transaction.state != "terminated":
            self.transaction.respond(response)

    def bestResponse(self, outcomes: list[Outcome]) -> Response:
        """§16.7 step 6: 6xx first, else the lowest class; challenges merged; 503 -> 500."""
        if not outcomes:
            return self.transaction.createResponse(408 if not self.cancelled else 487)
        sixes = [o for o in outcomes if o.code >= 600]
        if sixes:
            best = sixes[0]
        else:
            lowest = min(o.code // 100 for o in outcomes)
            candidates = [o for o in outcomes if o.code // 100 == lowest]
            best = candidates[0]
            if lowest == 4:
                for preferred in PREFERRED_4XX:
                    match = [o for o in candidates if o.code == preferred and not o.local]
                    if match:
                        best = match[0]
                        break
                if self.cancelled:
                    best = next((o for o in candidates if o.code == 487), best)
        if best.response is None:
            return self.transaction.createResponse(best.code, best.reason)
        response = best.response
        if best.code == 503:
            # §16.7 step 6: a 503 from downstream becomes a 500 here
            return self.transaction.createResponse(500, "Server Internal Error (next hop unavailable)")
        popTopVia(response)
        if best.code in (401, 407):
            for other in outcomes:
                if other is best or other.response is None or other.code not in (401, 407):
                    continue
                for name in CHALLENGE_HEADERS:
                    for value in other.response.getHeaderValues(name):
                        response.addHeader(name, value)
        return response

    # -- cancelling ----------------------------------------------------------

    def _cancelPending(self, exclude: Optional[Branch] = None) -> None:
        for other in self.branches:
            if other is not exclude and other.state == Branch.PENDING:
                other.cancel()

    def _callerCancelled(self, cancel: Request) -> None:
        """The caller sent CANCEL (§16.10): cancel every pending branch, fork no more."""
        self.service.counters.increment("routing.cancelled_by_caller")
        self.cancelled = True
        self.groups = []
        self._cancelPending()
        self._checkDone()

    def _serverFailed(self, transaction: Any, reason: str) -> None:
        if not self.done:
            self.cancelled = True
            self.groups = []
            self._cancelPending()
            self._checkDone()

    def abort(self) -> None:
        """Stop every timer (the service is stopping)."""
        for branch in self.branches:
            branch._stopTimers()


def _copy(request: Request) -> Request:
    return Request(request.method, request.requestURI.copy(), list(request.headers), request.body)


def copyRequest(request: Request) -> Request:
    """A copy to forward: own header list, own Request-URI."""
    return _copy(request)


def forwardCopy(base: Request, via: str, recordRoutes: tuple[str, ...] | list[str] = (), parsedVia: Optional[Via] = None) -> Request:
    """
    A copy of C{base} to send: its header list copied once, with C{via}
    before the first Via and C{recordRoutes} before the first Record-Route
    (at the end when there is none), as C{addHeader("Via", via,
    first=True)} and C{setHeaderValues("Record-Route", recordRoutes +
    existing)} would do, without rebuilding the list per edit.  With
    C{parsedVia} (C{via} parsed), the headers C{base} has parsed stay
    parsed in the copy.
    """
    headers: list[tuple[str, str]] = []
    append = headers.append
    viaLine: Optional[tuple[str, str]] = ("Via", via)
    rrLines: Optional[list[tuple[str, str]]] = [("Record-Route", v) for v in recordRoutes] if recordRoutes else None
    for line in base.headers:
        name = line[0]
        if name == "Via" and viaLine is not None:
            append(viaLine)
            viaLine = None
        elif name == "Record-Route" and rrLines is not None:
            headers.extend(rrLines)
            rrLines = None
        append(line)
    if viaLine is not None:
        headers.insert(0, viaLine)
    if rrLines is not None:
        headers.extend(rrLines)
    request = Request(base.method, base.requestURI, headers, base.body)
    cache = base._cache
    if parsedVia is not None and cache:
        vias = cache.get("Via")
        copied = request._cache
        copied.update(cache)
        copied.pop("Record-Route", None)
        if vias is None:
            copied.pop("Via", None)
        else:
            copied["Via"] = [parsedVia, *vias]  # type: ignore[misc]
    return request


def popTopVia(message: Message) -> None:
    """
    Remove the topmost Via value (ours) in place: one list edit, no
    re-parse.  The Vias parsed already stay parsed, less the top one (the
    response is routed by the next one, RFC 3261 §18.2.2).
    """
    headers = message.headers
    for index, (name, value) in enumerate(headers):
        if name == "Via":
            if "," in value:
                rest = splitCommas(value)[1:]
                if rest:
                    headers[index] = ("Via", ", ".join(rest))
                else:
                    del headers[index]
            else:
                del headers[index]
            break
    else:
        return
    cache = message._cache
    vias = cache.get("Via")
    if vias:
        # a new list: the parsed list may be shared with another message
        cache["Via"] = vias[1:]  # type: ignore[index]
    else:
        cache.pop("Via", None)
