# -*- test-case-name: tests.test_transaction_server -*-
"""Server transactions (RFC 3261 §17.2, with the RFC 6026 Accepted state)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Hashable, Optional

from twisted.logger import Logger

from voipgw.sip.message import Request, Response, responseTo
from voipgw.transaction.base import Transaction
from voipgw.transport.address import Address

if TYPE_CHECKING:
    from voipgw.transaction.layer import TransactionLayer


class ServerTransaction(Transaction):
    """
    The server side of one request.  The application answers through
    L{respond}; retransmitted requests are absorbed here and never reach
    the application twice.
    """

    log = Logger()

    def __init__(self, layer: "TransactionLayer", key: Hashable, request: Request, source: Address, state: str) -> None:
        super().__init__(layer, key, state)
        self.request = request
        self.source = source
        self.lastResponse: Optional[Response] = None
        self.toTag = layer.newTag()
        self.cancelled = False
        self._cancelCallbacks: list[Callable[[Request], None]] = []
        self._ackCallbacks: list[Callable[[Request], None]] = []

    @property
    def reliable(self) -> bool:
        return self.source.reliable

    @property
    def method(self) -> str:
        return self.request.method

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
            response = self.createResponse(response, reason)
        if headers:
            for name, value in headers:
                response.addHeader(name, value)
        self._sendResponse(response)
        return response

    def _transmit(self, response: Response) -> None:
        self.lastResponse = response
        self.layer.counters.increment(f"out.response.{response.code // 100}xx")
        self.layer.transports.sendResponse(response, self.source)

    def _sendResponse(self, response: Response) -> None:
        raise NotImplementedError

    def receivedRetransmission(self, request: Request, source: Address) -> None:
        raise NotImplementedError

    def onCancel(self, callback: Callable[[Request], None]) -> None:
        """Call C{callback(cancelRequest)} if a matching CANCEL arrives."""
        if self.cancelled:
            raise RuntimeError("already cancelled")
        self._cancelCallbacks.append(callback)

    def cancel(self, cancelRequest: Request) -> None:
        """A CANCEL matched this transaction (RFC 3261 §9.2)."""
        if self.cancelled:
            return
        self.cancelled = True
        callbacks, self._cancelCallbacks = self._cancelCallbacks, []
        if not callbacks and self.state == self.PROCEEDING:
            self.respond(487)
        for callback in callbacks:
            callback(cancelRequest)

    def transportError(self, reason: str) -> None:
        self.log.info("transport error answering {method} from {source}: {reason}", method=self.method, source=str(self.source), reason=reason)
        self.layer.counters.increment("transactions.transport_errors")
        self.terminate()


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.2, Figure 8."""

    def __init__(self, layer: "TransactionLayer", key: Hashable, request: Request, source: Address) -> None:
        super().__init__(layer, key, request, source, self.TRYING)

    def _sendResponse(self, response: Response) -> None:
        if self.state in (self.COMPLETED, self.TERMINATED):
            self.log.warn("ignoring {code} for completed {method} transaction", code=response.code, method=self.method)
            return
        self._transmit(response)
        if response.code < 200:
            self.state = self.PROCEEDING
            return
        self.state = self.COMPLETED
        delay = self.timerFor(self.layer.timers.J)
        if delay is None:
            self.terminate()
        else:
            self.startTimer("J", delay, self.terminate)

    def receivedRetransmission(self, request: Request, source: Address) -> None:
        self.layer.counters.increment("transactions.retransmissions_absorbed")
        if self.state in (self.PROCEEDING, self.COMPLETED) and self.lastResponse is not None:
            self.layer.counters.increment(f"out.response.{self.lastResponse.code // 100}xx")
            self.layer.transports.sendResponse(self.lastResponse, source)


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.1, Figure 7, as updated by RFC 6026 (Accepted state)."""

    def __init__(self, layer: "TransactionLayer", key: Hashable, request: Request, source: Address) -> None:
        super().__init__(layer, key, request, source, self.PROCEEDING)
        self._timerG = layer.timers.T1
        self.startTimer("trying", layer.timers.trying, self._sendTrying)

    def _sendTrying(self) -> None:
        if self.lastResponse is None and self.state == self.PROCEEDING:
            self._transmit(responseTo(self.request, 100))

    def _sendResponse(self, response: Response) -> None:
        code = response.code
        if self.state == self.ACCEPTED and 200 <= code < 300:
            self._transmit(response)  # the TU retransmits its 2xx
            return
        if self.state != self.PROCEEDING:
            self.log.warn("ignoring {code} for INVITE transaction in state {state}", code=code, state=self.state)
            return
        self.cancelTimer("trying")
        self._transmit(response)
        if code < 200:
            return
        if code < 300:
            self.state = self.ACCEPTED
            self.startTimer("L", self.layer.timers.L, self.terminate)
            return
        self.state = self.COMPLETED
        if not self.reliable:
            self.startTimer("G", self._timerG, self._retransmitFinal)
        self.startTimer("H", self.layer.timers.H, self._timerH)

    def _retransmitFinal(self) -> None:
        if self.state != self.COMPLETED or self.lastResponse is None:
            return
        self.layer.counters.increment("transactions.response_retransmissions")
        self.layer.transports.sendResponse(self.lastResponse, self.source)
        self._timerG = min(2 * self._timerG, self.layer.timers.T2)
        self.startTimer("G", self._timerG, self._retransmitFinal)

    def _timerH(self) -> None:
        self.log.info("no ACK for {code} to INVITE from {source} (timer H)", code=self.lastResponse.code if self.lastResponse else 0, source=str(self.source))
        self.layer.counters.increment("transactions.timer_h")
        self.terminate()

    def receivedRetransmission(self, request: Request, source: Address) -> None:
        self.layer.counters.increment("transactions.retransmissions_absorbed")
        if self.state in (self.PROCEEDING, self.COMPLETED) and self.lastResponse is not None:
            self.layer.counters.increment(f"out.response.{self.lastResponse.code // 100}xx")
            self.layer.transports.sendResponse(self.lastResponse, source)
        # In Accepted the 2xx is retransmitted by the TU, not here (RFC 6026).

    def receivedAck(self, ack: Request, source: Address) -> bool:
        """
        An ACK matched this transaction.  Returns True if the transaction
        absorbed it (ACK for a non-2xx), False if it belongs to the TU.
        """
        if self.state == self.COMPLETED:
            self.state = self.CONFIRMED
            self.cancelTimer("G")
            self.cancelTimer("H")
            delay = self.timerFor(self.layer.timers.T4)
            if delay is None:
                self.terminate()
            else:
                self.startTimer("I", delay, self.terminate)
            return True
        if self.state == self.CONFIRMED:
            return True
        return self.state != self.ACCEPTED
