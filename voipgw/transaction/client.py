# -*- test-case-name: tests.test_transaction_client -*-
"""Client transactions (RFC 3261 §17.1, with the RFC 6026 Accepted state)."""

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
    (C{transportFailed}); see L{voipgw.interfaces.IClientTransactionUser}.
    """

    log = Logger()

    def __init__(self, layer: "TransactionLayer", key: Hashable, request: Request, destination: Address, user: Any, state: str) -> None:
        super().__init__(layer, key, state)
        self.request = request
        self.destination = destination
        self.user = user
        self.lastResponse: Optional[Response] = None
        self._data = request.toBytes()

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
        self.log.info("transport error sending {method} to {destination}: {reason}", method=self.method, destination=str(self.destination), reason=reason)
        self.terminate()
        self.user.transportFailed(self, reason)

    def _timeout(self) -> None:
        self.layer.counters.increment("transactions.timeouts")
        self.terminate()
        self.user.timedOut(self)

    def receiveResponse(self, response: Response) -> None:
        raise NotImplementedError


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.2, Figure 6."""

    def __init__(self, layer: "TransactionLayer", key: Hashable, request: Request, destination: Address, user: Any) -> None:
        super().__init__(layer, key, request, destination, user, self.TRYING)
        self._timerE = layer.timers.T1

    def start(self) -> None:
        self._send()
        if not self.reliable:
            self.startTimer("E", self._timerE, self._retransmit)
        self.startTimer("F", self.layer.timers.F, self._timeout)

    def _retransmit(self) -> None:
        if self.state not in (self.TRYING, self.PROCEEDING):
            return
        self.layer.counters.increment("transactions.request_retransmissions")
        self._send()
        if self.state == self.TRYING:
            self._timerE = min(2 * self._timerE, self.layer.timers.T2)
        else:
            self._timerE = self.layer.timers.T2
        self.startTimer("E", self._timerE, self._retransmit)

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


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.1, Figure 5, as updated by RFC 6026."""

    def __init__(self, layer: "TransactionLayer", key: Hashable, request: Request, destination: Address, user: Any) -> None:
        super().__init__(layer, key, request, destination, user, self.CALLING)
        self._timerA = layer.timers.T1
        self.ack: Optional[Request] = None

    def start(self) -> None:
        self._send()
        if not self.reliable:
            self.startTimer("A", self._timerA, self._retransmit)
        self.startTimer("B", self.layer.timers.B, self._timeout)

    def _retransmit(self) -> None:
        if self.state != self.CALLING:
            return
        self.layer.counters.increment("transactions.request_retransmissions")
        self._send()
        self._timerA *= 2
        self.startTimer("A", self._timerA, self._retransmit)

    def receiveResponse(self, response: Response) -> None:
        code = response.code
        if self.state in (self.CALLING, self.PROCEEDING):
            self.cancelTimer("A")
            self.lastResponse = response
            if code < 200:
                self.state = self.PROCEEDING
                self.user.responseReceived(response, self)
                return
            self.cancelTimer("B")
            if code < 300:
                self.state = self.ACCEPTED
                self.startTimer("M", self.layer.timers.M, self.terminate)
                self.user.responseReceived(response, self)
                return
            self.state = self.COMPLETED
            self._sendAck(response)
            delay = self.timerFor(self.layer.timers.D)
            if delay is None:
                self.terminate()
            else:
                self.startTimer("D", delay, self.terminate)
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
        if self.state in (self.CALLING, self.PROCEEDING):
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
