# -*- test-case-name: tests.test_sip_message -*-
"""
Header names: canonical spelling, compact forms (RFC 3261 §7.3.3 and
extensions) and which headers may carry comma-separated lists.
"""

from __future__ import annotations

from typing import Final

COMPACT_FORMS: Final = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN: Final = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "History-Info",
    "Identity", "Identity-Info", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires",
    "Min-SE", "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path",
    "Priority", "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require",
    "RAck", "Reason", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact",
    "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq",
    "Security-Client", "Security-Server", "Security-Verify", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State",
    "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate", "Flow-Timer", "Sec-WebSocket-Protocol",
]

CANONICAL: Final = {name.lower(): name for name in _KNOWN}
#: The canonical spellings of the headers this layer knows.
KNOWN_NAMES: Final = frozenset(_KNOWN)
for _short, _long in COMPACT_FORMS.items():
    CANONICAL[_short] = _long

#: Headers whose values are comma-separated lists (RFC 3261 §7.3.1): several
#: values on one line are equivalent to several header lines.
LIST_HEADERS: Final = frozenset(
    [
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
        "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Error-Info",
        "History-Info", "In-Reply-To", "P-Asserted-Identity", "Path", "Privacy",
        "Proxy-Require", "Record-Route", "Reject-Contact", "Accept-Contact", "Require",
        "Route", "Security-Client", "Security-Server", "Security-Verify", "Service-Route",
        "Supported", "Unsupported", "Via", "Warning",
    ]
)

#: Headers that must appear at most once (a second one is a 400).
SINGLE_HEADERS: Final = frozenset(
    ["Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length", "Content-Type",
     "Expires", "Min-Expires"]
)


_EXACT: Final = {name: name for name in _KNOWN}
_EXACT.update(COMPACT_FORMS)
_EXACT.update((short.upper(), long) for short, long in COMPACT_FORMS.items())


def canonicalName(name: str) -> str:
    """
    The canonical spelling of a header name (compact forms expanded);
    unknown names are returned as given.
    """
    canonical = _EXACT.get(name)
    if canonical is not None:
        return canonical
    canonical = CANONICAL.get(name.lower())
    if canonical is not None:
        return canonical
    return name
