# -*- test-case-name: tests.test_transaction_client -*-
"""
Client transactions (RFC 3261 §17.1, with the RFC 6026 Accepted state).

An application starts one with
C{layer.request(request, destination, user)}.  C{user} is any object with
these three methods (the client transaction user):

  - C{responseReceived(response, transaction)}: each response the TU must
    see: every provisional response, the final response, and (INVITE, in
    Accepted) every retransmission of a 2xx, since the TU sends the ACK for
    a 2xx itself.  Retransmitted non-2xx final responses are absorbed; the
    ACK for a non-2xx final response is sent hop-by-hop by the transaction
    (L{buildAck}).
  - C{timedOut(transaction)}: timer B (INVITE, still in Calling) or timer F
    (non-INVITE, Trying or Proceeding) fired; called at most once.
  - C{transportFailed(transaction, reason)}: the transport could not send
    the request (C{onError} from the transport service); called at most
    once, and never after C{timedOut} or a final response.

The transaction is terminated before C{timedOut} and C{transportFailed} are
called.  An INVITE in Proceeding is not timed out by the transaction (timer
B stops at the first provisional response); a proxy runs its own timer C.
To cancel a pending INVITE, send L{buildCancel}C{(invite)} through
C{layer.request(cancel, destination, user, addVia=False)}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable, Optional

from twisted.logger import Logger

from voipgw.sip.message import Request, Response
from voipgw.transaction.base import Transaction
from voipgw.transport.address import Address

if TYPE_CHECKING:
    from voipgw.transaction.layer import TransactionLayer


class ClientTransaction(Transaction):
    """
    The client side of one request sent to C{destination}.

    C{user} is told of each response it should see (C{responseReceived}),
    of a timeout (C{timedOut}) and of a transport failure
    (C{transportFailed}); see this module's docstring.
    """

    log = Logger()

    def __init__(self, layer: "TransactionLayer", key: Hashable, request: Request, destination: Address, user: Any, state: str) -> None:
        super().__init__(layer, key, state)
        self.request = request
        self.destination = destination
        self.user = user
        self.lastResponse: Optional[Response] = None

    @property
    def reliable(self) -> bool:
        return self.destination.reliable

    @property
    def method(self) -> str:
        return self.request.method

    def start(self) -> None:
        raise NotImplementedError

    def _send(self) -> None:
        self.layer.transports.send(self.request, self.destination, onError=self.transportError)

    def transportError(self, reason: str) -> None:
        if self.state == self.TERMINATED:
            return
        self.layer.counters.increment("transactions.transport_errors")
        self.log.debug("transport error sending {method} to {destination}: {reason}", method=self.method, destination=str(self.destination), reason=reason)
        self.terminate()
        try:
            self.user.transportFailed(self, reason)
        except Exception:
            self._userFailed("transportFailed")

    def _timeout(self) -> None:
        self.layer.counters.increment("transactions.timeouts")
        self.terminate()
        try:
            self.user.timedOut(self)
        except Exception:
            self._userFailed("timedOut")

    def _userFailed(self, callback: str) -> None:
        # Timer and transport callbacks run from the reactor: log here.
        self.layer.counters.increment("application_errors")
        self.log.failure("{callback} of the user of {method} to {destination} failed", callback=callback, method=self.method, destination=str(self.destination))

    def receiveResponse(self, response: Response) -> None:
        raise NotImplementedError


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.2, Figure 6."""

    def __init__(self, layer: "TransactionLayer", key: Hashable, request: Request, destination: Address, user: Any) -> None:
        super().__init__(layer, key, request, destination, user, self.TRYING)
        self._timerE = layer.timers.T1
        #: When timer F fires (clock time): over UDP it is started only
        #: once the next timer E would come after it.
        self._deadlineF = 0.0

    def start(self) -> None:
        timers = self.layer.timers
        if self.reliable:
            self.startTimer("F", timers.F, self._timeout)
        else:
            # Timer E runs as long as timer F matters (Trying and
            # Proceeding): one timer at a time, E until F comes first.
            self._deadlineF = self.layer.clock.seconds() + timers.F
            self.startTimer("E", self._timerE, self._retransmit)
        self._send()

    def _retransmit(self) -> None:
        if self.state not in (self.TRYING, self.PROCEEDING):
            return
        self.layer.counters.increment("transactions.request_retransmissions")
        if self.state == self.TRYING:
            self._timerE = min(2 * self._timerE, self.layer.timers.T2)
        else:
            self._timerE = self.layer.timers.T2
        remaining = self._deadlineF - self.layer.clock.seconds()
        if self._timerE < remaining:
            self.startTimer("E", self._timerE, self._retransmit)
        else:
            # (this E was due before F; a late one leaves F due now)
            self.startTimer("F", max(0.0, remaining), self._timeout)
        self._send()

    def receiveResponse(self, response: Response) -> None:
        if self.state in (self.COMPLETED, self.TERMINATED):
            return  # retransmission of the final response: absorbed
        self.lastResponse = response
        if response.code < 200:
            self.state = self.PROCEEDING
            self.user.responseReceived(response, self)
            return
        self.state = self.COMPLETED
        self.cancelTimer("E")
        self.cancelTimer("F")
        delay = self.timerFor(self.layer.timers.T4)
        if delay is None:
            self.terminate()
        else:
            self.startTimer("K", delay, self.terminate)
        self.user.responseReceived(response, self)
        # Timer K only absorbs retransmissions of the final response: the
        # request's parsed headers are not needed (they parse again if
        # anyone asks).
        self.request.invalidate()


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.1, Figure 5, as updated by RFC 6026."""

    def __init__(self, layer: "TransactionLayer", key: Hashable, request: Request, destination: Address, user: Any) -> None:
        super().__init__(layer, key, request, destination, user, self.CALLING)
        self._timerA = layer.timers.T1
        #: When timer B fires (clock time): over UDP it is started only
        #: once the next timer A would come after it.
        self._deadlineB = 0.0
        self.ack: Optional[Request] = None

    def start(self) -> None:
        timers = self.layer.timers
        if self.reliable:
            self.startTimer("B", timers.B, self._timeout)
        else:
            # Timers A and B both guard Calling only: one timer at a
            # time, A until B comes first.
            self._deadlineB = self.layer.clock.seconds() + timers.B
            self.startTimer("A", self._timerA, self._retransmit)
        self._send()

    def _retransmit(self) -> None:
        if self.state != self.CALLING:
            return
        self.layer.counters.increment("transactions.request_retransmissions")
        self._timerA *= 2
        remaining = self._deadlineB - self.layer.clock.seconds()
        if self._timerA < remaining:
            self.startTimer("A", self._timerA, self._retransmit)
        else:
            # (this A was due before B; a late one leaves B due now)
            self.startTimer("B", max(0.0, remaining), self._timeout)
        self._send()

    def receiveResponse(self, response: Response) -> None:
        code = response.code
        if self.state in (self.CALLING, self.PROCEEDING):
            # Timer B only guards Calling (§17.1.1.2): a ringing INVITE
            # may stay in Proceeding as long as the callee likes.
            self.cancelTimer("A")
            self.cancelTimer("B")
            self.lastResponse = response
            if code < 200:
                self.state = self.PROCEEDING
                self.user.responseReceived(response, self)
                return
            if code < 300:
                self.state = self.ACCEPTED
                self.startTimer("M", self.layer.timers.M, self.terminate)
                self.user.responseReceived(response, self)
                # For the 32 s of timer M this transaction only passes 2xx
                # retransmissions on: the request's parsed headers are not
                # needed (they parse again if anyone asks).
                self.request.invalidate()
                return
            self.state = self.COMPLETED
            delay = self.timerFor(self.layer.timers.D)
            if delay is None:
                self.terminate()
            else:
                self.startTimer("D", delay, self.terminate)
            self._sendAck(response)
            self.user.responseReceived(response, self)
        elif self.state == self.ACCEPTED:
            if 200 <= code < 300:
                self.user.responseReceived(response, self)  # 2xx retransmission
        elif self.state == self.COMPLETED:
            if code >= 300 and self.ack is not None:
                self.layer.transports.send(self.ack, self.destination)

    def _sendAck(self, response: Response) -> None:
        """The hop-by-hop ACK for a non-2xx final response (RFC 3261 §17.1.1.3)."""
        self.ack = buildAck(self.request, response)
        self.layer.transports.send(self.ack, self.destination)

    def _timeout(self) -> None:
        if self.state == self.CALLING:
            super()._timeout()


def buildAck(request: Request, response: Response) -> Request:
    """ACK for a non-2xx final response to C{request}."""
    headers: list[tuple[str, str]] = [("Via", request.getHeaderValues("Via")[0])]
    for name, value in request.headers:
        if name in ("Route", "From", "Call-ID", "Max-Forwards"):
            headers.append((name, value))
    toValue = response.getHeader("To")
    headers.append(("To", toValue if toValue is not None else request.getHeader("To") or ""))
    headers.append(("CSeq", f"{request.cseq.number} ACK"))
    ack = Request("ACK", request.requestURI, headers)
    return ack


def buildCancel(request: Request) -> Request:
    """CANCEL for a pending INVITE (RFC 3261 §9.1)."""
    headers: list[tuple[str, str]] = [("Via", request.getHeaderValues("Via")[0])]
    for name, value in request.headers:
        if name in ("Route", "From", "To", "Call-ID", "Max-Forwards"):
            headers.append((name, value))
    headers.append(("CSeq", f"{request.cseq.number} CANCEL"))
    return Request("CANCEL", request.requestURI, headers)
