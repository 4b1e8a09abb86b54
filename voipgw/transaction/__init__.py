"""RFC 3261 §17 transactions."""

from voipgw.transaction.client import ClientTransaction, InviteClientTransaction, NonInviteClientTransaction, buildAck, buildCancel
from voipgw.transaction.layer import TransactionLayer
from voipgw.transaction.server import InviteServerTransaction, NonInviteServerTransaction, ServerTransaction
from voipgw.transaction.timers import TimerSettings

__all__ = [
    "ClientTransaction", "InviteClientTransaction", "NonInviteClientTransaction", "buildAck",
    "buildCancel", "TransactionLayer", "InviteServerTransaction", "NonInviteServerTransaction",
    "ServerTransaction", "TimerSettings",
]
