# -*- test-case-name: tests.test_proxy -*-
"""
Where a request goes: L{Target}s returned by C{RoutingService.route}, and
the plain helpers of RFC 3261 §16 (loop-detection hash, next hop of a URI).
"""

from __future__ import annotations

from hashlib import blake2b
from dataclasses import dataclass, field
from typing import Any, Optional

from voipgw.sip.grammar import splitCommas
from voipgw.sip.message import Request
from voipgw.sip.uri import URI, isIPLiteral
from voipgw.transport.address import Address

#: Our branches: the magic cookie, this mark, the loop hash, a dot, random.
BRANCH_MARK = "z9hG4bKvg"
_MARK_LEN = len(BRANCH_MARK)
_HASH_LEN = 16
#: Headers in the loop hash besides the fixed fields (Proxy-Require and
#: Route are list headers: split as getHeaderValues does).
_HASHED = frozenset(["Proxy-Require", "Proxy-Authorization", "Route"])


@dataclass
class Target:
    """
    One destination of a proxied request (one branch).

    @ivar uri: the Request-URI of the forwarded request.
    @ivar destination: the next hop, overriding the one derived from the
        Route set or the URI (a NAT'ed contact's C{received}, a dispatcher
        member).
    @ivar hop: a URI to send to instead (resolved with DNS if it names a
        host), e.g. a dispatcher member; the request is not changed.
    @ivar routes: Route header values pushed on top of the request's route
        set (a registration's Path).
    @ivar q: the contact's q-value (serial forking order).
    @ivar failover: targets tried in order when this one fails (timeout,
        unreachable, or a failover response code).
    @ivar setName: the dispatcher set this target was chosen from.
    @ivar attributes: anything an application wants to remember.
    """

    uri: URI
    destination: Optional[Address] = None
    hop: Optional[URI] = None
    routes: tuple[str, ...] = ()
    q: float = 1.0
    failover: list["Target"] = field(default_factory=list)
    setName: Optional[str] = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, uri: str, **kw: Any) -> "Target":
        """A target from URI text (C{sip:bob@192.0.2.4:5060})."""
        return cls(URI.parse(uri), **kw)


def isIPAddress(host: str) -> bool:
    return isIPLiteral(host)


def uriTransport(uri: URI) -> str:
    """The transport a URI asks for (RFC 3263 §4.1 without DNS)."""
    transport = uri.transport
    if uri.scheme == "sips":
        return "tls"
    if transport in ("tcp", "tls", "udp"):
        return transport
    return "udp"


def addressOfURI(uri: URI) -> Optional[Address]:
    """
    The address of a URI whose host is an IP literal (no DNS needed), or
    C{None} when the host is a name.  C{maddr} is honoured.
    """
    host = uri.params.get("maddr") or uri.host
    if not isIPAddress(host):
        return None
    transport = uriTransport(uri)
    port = uri.port or (5061 if transport == "tls" else 5060)
    return Address(transport, host.strip("[]"), port)


def loopHash(request: Request, viaText: str) -> str:
    """
    The loop-detection part of our branch (RFC 3261 §16.6 step 8): a hash
    of the request as received: Request-URI, From and To tags, Call-ID,
    CSeq number, Proxy-Require, Proxy-Authorization, Route, and C{viaText},
    the Via that was topmost when it arrived.
    """
    try:
        toTag = request.toAddress.tag or ""
        fromTag = request.fromAddress.tag or ""
    except ValueError:
        toTag = fromTag = ""
    proxyRequire: list[str] = []
    proxyAuthorization: list[str] = []
    route: list[str] = []
    for name, value in request.headers:
        if name in _HASHED:
            into = proxyRequire if name == "Proxy-Require" else proxyAuthorization if name == "Proxy-Authorization" else route
            if into is not proxyAuthorization and "," in value:
                into.extend(splitCommas(value))
            else:
                into.append(value)
    parts = [
        request.startLine(), fromTag, toTag, request.callId, str(request.cseq.number), viaText,
        ",".join(proxyRequire), ",".join(proxyAuthorization), ",".join(route),
    ]
    return blake2b("\x00".join(parts).encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def branchLoopHash(branch: Optional[str]) -> Optional[str]:
    """The loop hash inside one of our branches, or C{None} if it is not ours."""
    if not branch or not branch.startswith(BRANCH_MARK):
        return None
    return branch[_MARK_LEN:_MARK_LEN + _HASH_LEN]
