"""Transaction matching keys (RFC 3261 §17.1.3 and §17.2.3)."""

from __future__ import annotations

from typing import Hashable

from voipgw.sip.message import Request, Response


def serverKey(request: Request, method: str | None = None) -> Hashable:
    """
    The key of the server transaction C{request} belongs to.  ACK maps to
    its INVITE; C{method} overrides (CANCEL looks up its INVITE this way).
    With an RFC 2543 branch (no magic cookie) the fallback of §17.2.3 is
    used: Request-URI, From tag, Call-ID, CSeq number and the top Via.
    """
    via = request.topVia
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch and branch.startswith("z9hG4bK"):
        return (branch, via.host.lower(), via.port, method)
    uri = request.requestURI
    return (
        "2543",
        str(uri),
        request.fromAddress.tag,
        request.callId,
        request.cseq.number,
        via.host.lower(),
        via.port,
        branch,
        method,
    )


def clientKey(message: Request | Response) -> Hashable:
    """The key of a client transaction: top Via branch and CSeq method."""
    method = message.cseq.method
    if method == "ACK":
        method = "INVITE"
    return (message.topVia.branch, method)
