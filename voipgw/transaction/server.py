# -*- test-case-name: tests.test_transaction_server -*-
"""
Server transactions (RFC 3261 §17.2, with the RFC 6026 Accepted state).

The application (the transaction user) gets each new request once, with
its transaction, from L{voipgw.transaction.layer.TransactionLayer}, and
answers through L{ServerTransaction.respond} (a status code or a
L{Response} built with L{ServerTransaction.createResponse}).  It may
register:

  - L{ServerTransaction.onCancel}: called with the CANCEL request when a
    CANCEL matches a pending INVITE; without a callback the transaction
    answers 487 itself;
  - L{ServerTransaction.onFailure}: called with C{(transaction, reason)}
    when the transaction fails: C{"timeout"} when timer H fires (no ACK
    for a non-2xx final response), or the transport's reason when a
    response cannot be sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Hashable, Optional

from twisted.logger import Logger

from voipgw.sip.errors import SIPParseError
from voipgw.sip.message import Request, Response, responseTo
from voipgw.transaction.base import Transaction
from voipgw.transport.address import Address

if TYPE_CHECKING:
    from voipgw.transaction.layer import TransactionLayer

#: Counter names by status class, so the per-message path formats nothing.
RESPONSE_COUNTERS = tuple(f"out.response.{n}xx" for n in range(10))


class ServerTransaction(Transaction):
    """
    The server side of one request.  The application answers through
    L{respond}; retransmitted requests are absorbed here and never reach
    the application twice.
    """

    log = Logger()

    #: The state a new transaction starts in when no C{state} is given.
    INITIAL_STATE = Transaction.PROCEEDING

    def __init__(
        self, layer: "TransactionLayer", key: Hashable, request: Request, source: Address, state: Optional[str] = None,
    ) -> None:
        super().__init__(layer, key, state if state is not None else self.INITIAL_STATE)
        self.request = request
        self.source = source
        self.lastResponse: Optional[Response] = None
        self.toTag = layer.newTag()
        self.cancelled = False
        #: Why the transaction failed (C{"timeout"} or a transport reason), if it did.
        self.failure: Optional[str] = None
        # created on first use: most transactions never get a callback
        self._cancelCallbacks: Optional[list[Callable[[Request], None]]] = None
        self._failureCallbacks: Optional[list[Callable[["ServerTransaction", str], None]]] = None
        self._method = request.method

    @property
    def reliable(self) -> bool:
        return self.source.reliable

    @property
    def method(self) -> str:
        return self._method

    def createResponse(self, code: int, reason: Optional[str] = None) -> Response:
        """A response to this transaction's request, with this transaction's To tag."""
        return responseTo(self.request, code, reason, self.toTag)

    def respond(self, response: Response | int, reason: Optional[str] = None, headers: Optional[list[tuple[str, str]]] = None) -> Response:
        """
        Send a response; C{response} may be a status code.  Responses after
        the final one (other than 2xx retransmissions of an INVITE) are
        ignored with a log line.
        """
        if isinstance(response, int):
            if self.request is None:
                # completed (the request was dropped): the response is
                # ignored by _sendResponse below, with its log line
                response = Response(response, reason)
            else:
                response = self.createResponse(response, reason)
        if headers:
            for name, value in headers:
                response.addHeader(name, value)
        self._sendResponse(response)
        return response

    def respondStatelessly(self, response: Response) -> None:
        """
        Send a final response and keep no state (RFC 3261 §8.2.7: a UAS may
        answer statelessly, most commonly with the challenge to an
        unauthenticated request): no Completed state, no timer, the
        transaction is forgotten at once, and a retransmitted request is
        answered afresh by the application.
        """
        if response.code < 200:
            raise ValueError("only a final response can be sent statelessly")
        if self.state in (self.COMPLETED, self.TERMINATED, self.CONFIRMED, self.ACCEPTED):
            self.log.warn("ignoring {code} for answered {method} transaction", code=response.code, method=self.method)
            return
        self.terminate()
        self.request = None  # type: ignore[assignment]
        self._transmit(response)

    def _transmit(self, response: Response) -> None:
        self.lastResponse = response
        self._resend(response, self.source)

    def _resend(self, response: Response, destination: Address) -> None:
        layer = self.layer
        layer.counters.increment(RESPONSE_COUNTERS[response.code // 100 % 10])
        if layer.responseErrors:
            layer.transports.sendResponse(response, destination, onError=self.transportError)
        else:
            layer.transports.sendResponse(response, destination)

    def _sendResponse(self, response: Response) -> None:
        raise NotImplementedError

    def receivedRetransmission(self, request: Request, source: Address) -> None:
        raise NotImplementedError

    def onCancel(self, callback: Callable[[Request], None]) -> None:
        """Call C{callback(cancelRequest)} if a matching CANCEL arrives."""
        if self.cancelled:
            raise RuntimeError("already cancelled")
        if self._cancelCallbacks is None:
            self._cancelCallbacks = []
        self._cancelCallbacks.append(callback)

    def onFailure(self, callback: Callable[["ServerTransaction", str], None]) -> None:
        """Call C{callback(transaction, reason)} if this transaction fails (timer H, transport)."""
        if self._failureCallbacks is None:
            self._failureCallbacks = []
        self._failureCallbacks.append(callback)

    def removeCallbacks(self, *callbacks: Callable[..., None]) -> None:
        """
        Stop calling C{callbacks} registered with L{onCancel} or
        L{onFailure} (a TU done with the transaction lets go of itself).
        """
        for attribute in ("_cancelCallbacks", "_failureCallbacks"):
            registered = getattr(self, attribute)
            if registered:
                kept = [c for c in registered if c not in callbacks]
                setattr(self, attribute, kept or None)

    def cancel(self, cancelRequest: Request) -> None:
        """A CANCEL matched this transaction (RFC 3261 §9.2)."""
        if self.cancelled:
            return
        self.cancelled = True
        callbacks, self._cancelCallbacks = self._cancelCallbacks or [], None
        failed = False
        for callback in callbacks:
            try:
                callback(cancelRequest)
            except Exception:
                failed = True
                self.layer.counters.increment("application_errors")
                self.log.failure("onCancel callback failed for {method} from {source}", method=self.method, source=str(self.source))
        if (failed or not callbacks) and self.state == self.PROCEEDING:
            self.respond(487)

    def transportError(self, reason: str) -> None:
        """The transport could not send a response (RFC 3261 §17.2.4)."""
        if self.state == self.TERMINATED:
            return
        self.log.debug("transport error answering {method} from {source}: {reason}", method=self.method, source=str(self.source), reason=reason)
        self.layer.counters.increment("transactions.transport_errors")
        self._fail(reason)

    def terminate(self) -> None:
        """
        Enter Terminated (L{Transaction.terminate}) and drop the CANCEL and
        failure callbacks: none can fire any more, and they usually point
        back here through the application (a proxy context holds its
        server transaction), a cycle only the garbage collector could free.
        """
        super().terminate()
        self._cancelCallbacks = None
        self._failureCallbacks = None

    def _fail(self, reason: str) -> None:
        self.failure = reason
        callbacks, self._failureCallbacks = self._failureCallbacks, None
        self.terminate()
        for callback in callbacks or ():
            try:
                callback(self, reason)
            except Exception:
                self.layer.counters.increment("application_errors")
                self.log.failure("onFailure callback failed for {method}", method=self.method)


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.2, Figure 8: Trying, Proceeding, Completed (timer J)."""

    # no __init__ of its own (one call fewer per request): it starts in Trying
    INITIAL_STATE = Transaction.TRYING

    def _sendResponse(self, response: Response) -> None:
        if self.state in (self.COMPLETED, self.TERMINATED):
            self.log.warn("ignoring {code} for completed {method} transaction", code=response.code, method=self.method)
            return
        if response.code >= 200:
            # Enter Completed before sending, so that a synchronous
            # transport failure finds the final state.
            self.state = self.COMPLETED
            if self.source.reliable:
                self.terminate()
                self._transmit(response)
                return
            self.startTimer("J", self.layer.timers.J, self.terminate)
            self._transmit(response)
            # For the 32 s of timer J this transaction only absorbs
            # retransmissions with the last response: drop the parsed
            # request and the response's parsed headers, so that tens of
            # thousands of completed transactions hold a few objects each
            # (the garbage collector walks every one of them).
            self.request = None  # type: ignore[assignment]
            self._cancelCallbacks = None
            response.invalidate()
            return
        self.state = self.PROCEEDING
        self._transmit(response)

    def receivedRetransmission(self, request: Request, source: Address) -> None:
        self.layer.counters.increment("transactions.retransmissions_absorbed")
        # In Trying the retransmission is discarded (§17.2.2).
        if self.state in (self.PROCEEDING, self.COMPLETED) and self.lastResponse is not None:
            self._resend(self.lastResponse, source)


class InviteServerTransaction(ServerTransaction):
    """
    RFC 3261 §17.2.1, Figure 7, as updated by RFC 6026 §7.1: Proceeding,
    Completed (timers G, H), Confirmed (timer I), Accepted (timer L).
    """

    def __init__(self, layer: "TransactionLayer", key: Hashable, request: Request, source: Address) -> None:
        super().__init__(layer, key, request, source, self.PROCEEDING)
        self._timerG = layer.timers.T1

    def handedOver(self) -> None:
        """
        The TU has had the request (the layer calls this once
        C{handleRequest} returns): unless it answered already, as a proxy
        does at once, 100 Trying goes out after C{trying} seconds
        (§17.2.1).  Arming the timer only now spares the usual INVITE a
        timer started and cancelled at once.
        """
        if self.lastResponse is None and self.state == self.PROCEEDING:
            self.startTimer("trying", self.layer.timers.trying, self._sendTrying)

    def _sendTrying(self) -> None:
        if self.lastResponse is None and self.state == self.PROCEEDING:
            self.cancelTimer("trying")
            self._transmit(responseTo(self.request, 100))

    def _sendResponse(self, response: Response) -> None:
        code = response.code
        if self.state == self.ACCEPTED and 200 <= code < 300:
            self._transmit(response)  # the TU retransmits its 2xx (RFC 6026 §7.1)
            response.invalidate()
            return
        if self.state != self.PROCEEDING:
            self.log.warn("ignoring {code} for INVITE transaction in state {state}", code=code, state=self.state)
            return
        self.cancelTimer("trying")
        if code < 200:
            self._transmit(response)
            return
        timers = self.layer.timers
        if code < 300:
            self.state = self.ACCEPTED
            self.startTimer("L", timers.L, self.terminate)
            self._transmit(response)
            # For the 32 s of timer L this transaction only absorbs
            # retransmissions and passes the TU's 2xx on: the parsed
            # headers of the request and the response are not needed
            # (they parse again if anyone asks).
            self.request.invalidate()
            response.invalidate()
            return
        self.state = self.COMPLETED
        if not self.reliable:
            self.startTimer("G", self._timerG, self._retransmitFinal)
        self.startTimer("H", timers.H, self._timerH)
        self._transmit(response)

    def _retransmitFinal(self) -> None:
        if self.state != self.COMPLETED or self.lastResponse is None:
            return
        self.layer.counters.increment("transactions.response_retransmissions")
        self._timerG = min(2 * self._timerG, self.layer.timers.T2)
        self.startTimer("G", self._timerG, self._retransmitFinal)
        self._resend(self.lastResponse, self.source)

    def _timerH(self) -> None:
        self.log.debug("no ACK for {code} to INVITE from {source} (timer H)", code=self.lastResponse.code if self.lastResponse else 0, source=str(self.source))
        self.layer.counters.increment("transactions.timer_h")
        self._fail("timeout")

    def receivedRetransmission(self, request: Request, source: Address) -> None:
        self.layer.counters.increment("transactions.retransmissions_absorbed")
        if self.state == self.PROCEEDING and self.lastResponse is None:
            # Answer the retransmission at once rather than wait for the
            # 100 Trying timer: the client is clearly retransmitting.
            self._sendTrying()
        elif self.state in (self.PROCEEDING, self.COMPLETED) and self.lastResponse is not None:
            self._resend(self.lastResponse, source)
        # In Confirmed and Accepted retransmissions are absorbed silently:
        # the 2xx is retransmitted by the TU, not here (RFC 6026 §7.1).

    def receivedAck(self, ack: Request, source: Address) -> bool:
        """
        An ACK matched this transaction.  Returns True if the transaction
        absorbed it (ACK for a non-2xx), False if it belongs to the TU.
        """
        state = self.state
        if state == self.COMPLETED:
            if not self._ackMatchesTag(ack):
                return False
            self.state = self.CONFIRMED
            self.cancelTimer("G")
            self.cancelTimer("H")
            if self.reliable:
                self.terminate()
            else:
                self.startTimer("I", self.layer.timers.I, self.terminate)
            return True
        if state == self.CONFIRMED:
            return True
        if state == self.ACCEPTED:
            return False
        # Proceeding: an ACK before any final response is meaningless; drop it.
        return True

    def _ackMatchesTag(self, ack: Request) -> bool:
        """
        With RFC 2543 matching (no branch cookie) the ACK must also carry
        the To tag of the response (§17.2.3); with a branch it always does.
        """
        if self.key[0] != "2543":  # type: ignore[index]
            return True
        try:
            tag = ack.toAddress.tag
            sent = self.lastResponse.toAddress.tag if self.lastResponse is not None else None
        except SIPParseError:
            return False
        return sent is None or tag == sent
