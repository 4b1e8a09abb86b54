# -*- test-case-name: tests.test_transaction_layer -*-
"""
The transaction layer: matches incoming messages to transactions, creates
server transactions for new requests and hands them to the transaction
user (the dispatcher), and runs client transactions for outgoing requests.
"""

from __future__ import annotations

import inspect
from typing import Any, Hashable, Optional

from twisted.application.service import Service
from twisted.logger import Logger
from zope.interface import implementer

from voipgw.interfaces import IMessageReceiver
from voipgw.randomness import POOL
from voipgw.sip.address import Via
from voipgw.sip.errors import SIPParseError
from voipgw.sip.message import Message, Request, Response
from voipgw.stats import Counters
from voipgw.transaction.base import Transaction
from voipgw.transaction.client import ClientTransaction, InviteClientTransaction, NonInviteClientTransaction
from voipgw.transaction.keys import clientKey, serverKey
from voipgw.transaction.server import InviteServerTransaction, NonInviteServerTransaction, ServerTransaction
from voipgw.transaction.timers import TimerSettings, TimerWheel
from voipgw.transport.address import Address


#: Non-INVITE methods a CANCEL is matched against when no INVITE matches.
_CANCELLABLE = ("OPTIONS", "BYE", "REGISTER", "MESSAGE", "INFO", "UPDATE", "PRACK", "SUBSCRIBE", "NOTIFY", "REFER", "PUBLISH")


@implementer(IMessageReceiver)
class TransactionLayer(Service):
    """
    RFC 3261 §17 for the whole node (service name C{"transactions"}).

    C{user} (the transaction user) receives C{handleRequest(request,
    transaction)} once per new server transaction, C{handleAck(ack, source,
    transaction)} for an ACK no transaction absorbed (ACK for 2xx),
    and C{handleStrayResponse(response, source)} for a response matching no
    client transaction.
    """

    name = "transactions"
    log = Logger()

    def __init__(
        self,
        transports: Any,
        clock: Any,
        timers: Optional[TimerSettings] = None,
        counters: Optional[Counters] = None,
        user: Any = None,
    ) -> None:
        self.transports = transports
        self.clock = clock
        self.timers = timers or TimerSettings()
        self.counters = counters or Counters()
        self.user = user
        #: The long wait timers (J, K, H, I, L, M, D) of every transaction.
        self.wheel = TimerWheel(clock)
        self.server: dict[Hashable, ServerTransaction] = {}
        self.client: dict[Hashable, ClientTransaction] = {}
        #: Whether C{transports.sendResponse} reports failures through an
        #: C{onError} argument (RFC 3261 §17.2.4); checked once, here.
        self.responseErrors = _acceptsOnError(transports.sendResponse)
        self.counters.addGauge("transactions.server", lambda: len(self.server))
        self.counters.addGauge("transactions.client", lambda: len(self.client))
        transports.receiver = self

    # -- identifiers -------------------------------------------------------

    @staticmethod
    def newBranch() -> str:
        return "z9hG4bK" + POOL.hex(10)

    @staticmethod
    def newTag() -> str:
        return POOL.hex(6)

    # -- receiving ---------------------------------------------------------

    def receiveMessage(self, message: Message, source: Address) -> None:
        try:
            if isinstance(message, Request):
                self._receiveRequest(message, source)
            else:
                self._receiveResponse(message, source)  # type: ignore[arg-type]
        except SIPParseError as e:
            # The transport validated the message; what is left is rare and
            # counted, so it is not logged above debug (a flood would be).
            self.counters.increment("parse_errors")
            self.log.debug("unusable message from {source}: {reason}", source=str(source), reason=e.reason)
        except Exception:
            # A transaction user's callback raised (handleAck,
            # handleStrayResponse, responseReceived, an onCancel callback):
            # keep it away from the transport.
            self.counters.increment("application_errors")
            self.log.failure("error handling a message from {source}", source=str(source))

    def _receiveRequest(self, request: Request, source: Address) -> None:
        method = request.method
        key = serverKey(request)
        if method == "ACK":
            invite = self.server.get(key)
            if isinstance(invite, InviteServerTransaction) and invite.receivedAck(request, source):
                self.counters.increment("transactions.acks_absorbed")
                return
            if self.user is not None:
                self.user.handleAck(request, source, invite)
            return
        existing = self.server.get(key)
        if existing is not None:
            existing.receivedRetransmission(request, source)
            return
        transaction: ServerTransaction
        if method == "INVITE":
            transaction = InviteServerTransaction(self, key, request, source)
        else:
            transaction = NonInviteServerTransaction(self, key, request, source)
        self.server[key] = transaction
        self.counters.increment("transactions.server_created")
        if method == "CANCEL":
            self._receiveCancel(request, transaction)
            return
        if self.user is None:
            transaction.respond(503)
            return
        try:
            self.user.handleRequest(request, transaction)
        except Exception:
            self.log.failure("application failed handling {method} from {source}", method=method, source=str(source))
            self.counters.increment("application_errors")
            if transaction.state in (Transaction.TRYING, Transaction.PROCEEDING):
                transaction.respond(500)
        if isinstance(transaction, InviteServerTransaction):
            transaction.handedOver()

    def _receiveCancel(self, cancel: Request, transaction: ServerTransaction) -> None:
        """RFC 3261 §9.2: answer the CANCEL, then cancel the INVITE it matches."""
        invite = self.server.get(serverKey(cancel, "INVITE"))
        if not isinstance(invite, InviteServerTransaction) or invite.state == Transaction.TERMINATED:
            # §9.2: "regardless of the method of the original request, as
            # long as the CANCEL matched an existing transaction" it gets
            # 200, and cancelling a non-INVITE has no effect.  Look for the
            # methods a CANCEL may plausibly meet (a bounded set of lookups,
            # only when no INVITE matched).
            for method in _CANCELLABLE:
                if self.server.get(serverKey(cancel, method)) is not None:
                    transaction.respond(200)
                    return
            self.counters.increment("transactions.cancel_unmatched")
            transaction.respond(481)
            return
        transaction.toTag = invite.toTag  # §9.2: the same To tag as the INVITE's responses
        transaction.respond(200)
        if invite.state == Transaction.PROCEEDING:
            invite.cancel(cancel)

    def _receiveResponse(self, response: Response, source: Address) -> None:
        transaction = self.client.get(clientKey(response))
        if transaction is not None:
            transaction.receiveResponse(response)
            return
        self.counters.increment("transactions.stray_responses")
        if self.user is not None:
            self.user.handleStrayResponse(response, source)

    # -- sending -----------------------------------------------------------

    def localVia(self, destination: Address, branch: Optional[str] = None) -> Via:
        """A Via for a request leaving towards C{destination} (with rport)."""
        listener = self.transports.listenerFor(destination.transport, destination.bareHost)
        if listener is None:
            raise ValueError(f"no {destination.transport} listener to send from")
        host = listener.host
        if ":" in host:
            host = f"[{host}]"
        return Via(destination.transport.upper(), host, listener.port, {"branch": branch or self.newBranch(), "rport": None})

    def request(self, request: Request, destination: Address, user: Any, addVia: bool = True) -> ClientTransaction:
        """
        Start a client transaction sending C{request} to C{destination}.
        With C{addVia}, a Via for this node with a fresh branch is pushed on
        top; otherwise the request must already carry its own top Via.
        """
        if addVia:
            request.addHeader("Via", str(self.localVia(destination)), first=True)
        key = clientKey(request)
        if request.method == "INVITE":
            transaction: ClientTransaction = InviteClientTransaction(self, key, request, destination, user)
        else:
            transaction = NonInviteClientTransaction(self, key, request, destination, user)
        self.client[key] = transaction
        self.counters.increment("transactions.client_created")
        transaction.start()
        return transaction

    def sendStateless(self, message: Message, destination: Optional[Address] = None) -> None:
        """
        Send without a transaction: a response to where its Via says (RFC
        3261 §18.2.2), or a request (e.g. ACK for 2xx) to C{destination}.
        """
        if isinstance(message, Response):
            self.counters.increment(f"out.response.{message.code // 100}xx")
            self.transports.sendResponse(message, destination)
        else:
            assert destination is not None
            self.transports.send(message, destination)

    def forget(self, transaction: Transaction) -> None:
        if isinstance(transaction, ServerTransaction):
            if self.server.get(transaction.key) is transaction:
                del self.server[transaction.key]
        elif self.client.get(transaction.key) is transaction:
            del self.client[transaction.key]

    def stopService(self) -> None:
        super().stopService()
        for transaction in list(self.server.values()) + list(self.client.values()):
            for name in list(transaction._timers):
                transaction.cancelTimer(name)
        self.server.clear()
        self.client.clear()
        self.wheel.clear()


def _acceptsOnError(sendResponse: Any) -> bool:
    try:
        parameters = inspect.signature(sendResponse).parameters
    except (TypeError, ValueError):
        return False
    return "onError" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
