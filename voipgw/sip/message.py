# -*- test-case-name: tests.test_sip_message -*-
"""
SIP requests and responses (RFC 3261 §7): parse from bytes, inspect and
edit headers, serialise back.

Headers are kept as C{(canonical name, raw value)} pairs in arrival order,
so unknown headers pass through untouched; the structured headers (Via,
From, To, CSeq, ...) are parsed on first access and cached.  Editing a
header through L{Message.setHeader} and friends drops that cache.
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

from voipgw.sip.address import CSeq, NameAddress, Via, parseAddressList
from voipgw.sip.errors import MessageTooLarge, SIPParseError
from voipgw.sip.grammar import isToken, splitCommas
from voipgw.sip.headers import LIST_HEADERS, SINGLE_HEADERS, canonicalName
from voipgw.sip.uri import URI

SIP_VERSION = "SIP/2.0"

REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 430: "Flow Failed",
    433: "Anonymity Disallowed", 439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded", 469: "Bad Info Package", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_UNSET = object()


class Limits:
    """Hard limits applied while parsing (defaults suit a carrier edge)."""

    __slots__ = ("maxMessageSize", "maxHeaders", "maxLineLength")

    def __init__(
        self, maxMessageSize: int = 65535, maxHeaders: int = 256, maxLineLength: int = 8192
    ) -> None:
        self.maxMessageSize = maxMessageSize
        self.maxHeaders = maxHeaders
        self.maxLineLength = maxLineLength


DEFAULT_LIMITS = Limits()


class Message:
    """Common part of L{Request} and L{Response}."""

    __slots__ = ("headers", "body", "_cache")

    def __init__(self, headers: Optional[list[tuple[str, str]]] = None, body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body
        self._cache: dict[str, object] = {}

    # -- raw header access -------------------------------------------------

    def getHeader(self, name: str) -> Optional[str]:
        """The value of the first header called C{name} (any spelling), or C{None}."""
        name = canonicalName(name)
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def getHeaderValues(self, name: str) -> list[str]:
        """
        Every value of C{name}: all header lines, and for list headers each
        comma-separated element (commas inside quotes and <> respected).
        """
        name = canonicalName(name)
        values = [v for n, v in self.headers if n == name]
        if name in LIST_HEADERS:
            out: list[str] = []
            for v in values:
                out.extend(splitCommas(v))
            return out
        return values

    def hasHeader(self, name: str) -> bool:
        name = canonicalName(name)
        return any(n == name for n, _ in self.headers)

    def setHeader(self, name: str, value: object) -> None:
        """Replace every C{name} header by one with C{value} (in the first one's place)."""
        name = canonicalName(name)
        text = str(value)
        newHeaders = []
        placed = False
        for n, v in self.headers:
            if n == name:
                if not placed:
                    newHeaders.append((name, text))
                    placed = True
            else:
                newHeaders.append((n, v))
        if not placed:
            newHeaders.append((name, text))
        self.headers = newHeaders
        self._cache.pop(name, None)

    def addHeader(self, name: str, value: object, first: bool = False) -> None:
        """Add a header line, at the end or (C{first}) before the others of its name."""
        name = canonicalName(name)
        if first:
            for i, (n, _) in enumerate(self.headers):
                if n == name:
                    self.headers.insert(i, (name, str(value)))
                    break
            else:
                self.headers.append((name, str(value)))
        else:
            self.headers.append((name, str(value)))
        self._cache.pop(name, None)

    def removeHeader(self, name: str) -> None:
        name = canonicalName(name)
        self.headers = [(n, v) for n, v in self.headers if n != name]
        self._cache.pop(name, None)

    def setHeaderValues(self, name: str, values: Iterable[object]) -> None:
        """Replace every C{name} header by one line per value, in place of the first."""
        name = canonicalName(name)
        lines = [(name, str(v)) for v in values]
        newHeaders: list[tuple[str, str]] = []
        placed = False
        for n, v in self.headers:
            if n == name:
                if not placed:
                    newHeaders.extend(lines)
                    placed = True
            else:
                newHeaders.append((n, v))
        if not placed:
            newHeaders.extend(lines)
        self.headers = newHeaders
        self._cache.pop(name, None)

    # -- structured access (parsed on demand, cached) ----------------------

    def _cached(self, key: str, factory):  # type: ignore[no-untyped-def]
        value = self._cache.get(key, _UNSET)
        if value is _UNSET:
            value = factory()
            self._cache[key] = value
        return value

    @property
    def vias(self) -> list[Via]:
        """All Via entries, topmost first."""
        return self._cached("Via", lambda: [Via.parse(v) for v in self.getHeaderValues("Via")])

    @property
    def topVia(self) -> Via:
        vias = self.vias
        if not vias:
            raise SIPParseError("missing Via header")
        return vias[0]

    def _single(self, name: str, parser):  # type: ignore[no-untyped-def]
        def parse():  # type: ignore[no-untyped-def]
            value = self.getHeader(name)
            if value is None:
                raise SIPParseError(f"missing {name} header")
            return parser(value)

        return self._cached(name, parse)

    @property
    def fromAddress(self) -> NameAddress:
        return self._single("From", NameAddress.parse)

    @property
    def toAddress(self) -> NameAddress:
        return self._single("To", NameAddress.parse)

    @property
    def callId(self) -> str:
        return self._single("Call-ID", lambda v: v.strip())

    @property
    def cseq(self) -> CSeq:
        return self._single("CSeq", CSeq.parse)

    @property
    def contacts(self) -> list[NameAddress]:
        return self._cached("Contact", lambda: parseAddressList(",".join(self.getHeaderValues("Contact"))))

    @property
    def routes(self) -> list[NameAddress]:
        return self._cached("Route", lambda: [NameAddress.parse(v) for v in self.getHeaderValues("Route")])

    @property
    def recordRoutes(self) -> list[NameAddress]:
        return self._cached(
            "Record-Route", lambda: [NameAddress.parse(v) for v in self.getHeaderValues("Record-Route")]
        )

    @property
    def contentLength(self) -> int:
        return len(self.body)

    def invalidate(self) -> None:
        """Forget parsed header values (after editing C{headers} directly)."""
        self._cache.clear()

    # -- serialisation -----------------------------------------------------

    def startLine(self) -> str:
        raise NotImplementedError

    def toBytes(self) -> bytes:
        """The message on the wire; Content-Length always matches the body."""
        lines = [self.startLine()]
        for name, value in self.headers:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    __bytes__ = toBytes

    def validate(self) -> None:
        """
        Check the headers every request and response must carry (RFC 3261
        §8.1.1): Via, From, To, Call-ID, CSeq; parse each; reject duplicates
        of the single-valued ones.  Raises L{SIPParseError}.
        """
        seen: dict[str, int] = {}
        for name, _ in self.headers:
            if name in SINGLE_HEADERS:
                seen[name] = seen.get(name, 0) + 1
        for name, count in seen.items():
            if count > 1:
                raise SIPParseError(f"multiple {name} headers")
        missing = [n for n in ("Via", "From", "To", "Call-ID", "CSeq") if not self.hasHeader(n)]
        if missing:
            raise SIPParseError("missing " + ", ".join(missing) + " header" + ("s" if len(missing) > 1 else ""))
        self.topVia  # noqa: B018 - parse for validity
        self.fromAddress  # noqa: B018
        self.toAddress  # noqa: B018
        self.cseq  # noqa: B018
        if not self.callId:
            raise SIPParseError("empty Call-ID header")


class Request(Message):
    """A SIP request: C{METHOD Request-URI SIP/2.0}."""

    __slots__ = ("method", "uri", "_uriText")

    def __init__(
        self,
        method: str,
        uri: Union[URI, str],
        headers: Optional[list[tuple[str, str]]] = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        if isinstance(uri, URI):
            self.uri: Optional[URI] = uri
            self._uriText: Optional[str] = None
        else:
            self.uri = None
            self._uriText = uri

    @property
    def requestURI(self) -> URI:
        """The parsed Request-URI (parsed on first use)."""
        if self.uri is None:
            self.uri = URI.parse(self._uriText or "")
        return self.uri

    @requestURI.setter
    def requestURI(self, value: URI) -> None:
        self.uri = value
        self._uriText = None

    def startLine(self) -> str:
        uriText = str(self.uri) if self.uri is not None else self._uriText
        return f"{self.method} {uriText} {SIP_VERSION}"

    @property
    def maxForwards(self) -> Optional[int]:
        """The Max-Forwards value, or C{None} when the header is absent."""

        def parse() -> Optional[int]:
            value = self.getHeader("Max-Forwards")
            if value is None:
                return None
            value = value.strip()
            if not value.isdigit() or len(value) > 10 or int(value) > 255:
                raise SIPParseError(f"bad Max-Forwards {value!r}")
            return int(value)

        return self._cached("Max-Forwards", parse)

    def validate(self) -> None:
        super().validate()
        self.requestURI  # noqa: B018
        if self.cseq.method != self.method:
            raise SIPParseError("CSeq method does not match the request method")
        self.maxForwards  # noqa: B018

    def __repr__(self) -> str:
        return f"<Request {self.startLine()!r}>"


class Response(Message):
    """A SIP response: C{SIP/2.0 code reason}."""

    __slots__ = ("code", "reason")

    def __init__(
        self,
        code: int,
        reason: Optional[str] = None,
        headers: Optional[list[tuple[str, str]]] = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.code = code
        self.reason = reason if reason is not None else REASON_PHRASES.get(code, "Unknown")

    def startLine(self) -> str:
        return f"{SIP_VERSION} {self.code} {self.reason}"

    @property
    def isProvisional(self) -> bool:
        return self.code < 200

    @property
    def isFinal(self) -> bool:
        return self.code >= 200

    def __repr__(self) -> str:
        return f"<Response {self.code} {self.reason!r}>"


AnyMessage = Union[Request, Response]


def responseTo(
    request: Request, code: int, reason: Optional[str] = None, toTag: Optional[str] = None
) -> Response:
    """
    Build a response to C{request} (RFC 3261 §8.2.6): copy Via (all, in
    order), From, To (adding C{toTag} if it has none), Call-ID and CSeq.
    """
    headers: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name == "Via" or name == "From" or name == "Call-ID" or name == "CSeq":
            headers.append((name, value))
        elif name == "To":
            if toTag is not None and code != 100 and ";tag=" not in value.replace(" ", "").lower():
                try:
                    if request.toAddress.tag is None:
                        value = value + ";tag=" + toTag
                except SIPParseError:
                    pass
            headers.append((name, value))
    return Response(code, reason, headers)


# -- parsing ------------------------------------------------------------------


def _findHeaderEnd(data: bytes) -> tuple[int, int]:
    """Index where the header block ends and where the body starts, or (-1, -1)."""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return end, end + 4
    end = data.find(b"\n\n")
    if end >= 0:
        return end, end + 2
    return -1, -1


def parseMessage(
    data: bytes, limits: Limits = DEFAULT_LIMITS, datagram: bool = True
) -> AnyMessage:
    """
    Parse one complete message.

    With C{datagram} (UDP), a missing Content-Length means "the rest of the
    datagram"; a body longer than declared is truncated and a shorter one is
    an error (RFC 3261 §18.3).  Raises L{SIPParseError}; its C{request}
    attribute holds the partly parsed request when the fault can be answered.
    """
    if len(data) > limits.maxMessageSize:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds {limits.maxMessageSize}")
    headEnd, bodyStart = _findHeaderEnd(data)
    if headEnd < 0:
        head = data.rstrip(b"\r\n")
        body = b""
        if not datagram:
            raise SIPParseError("incomplete header block")
    else:
        head = data[:headEnd]
        body = data[bodyStart:]
    message = _parseHead(head, limits)
    _applyContentLength(message, body, datagram)
    return message


def _parseHead(head: bytes, limits: Limits) -> AnyMessage:
    text = head.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    # Tolerate leading CRLFs before the start line (RFC 3261 §7.5).
    while lines and not lines[0].strip("\r"):
        lines.pop(0)
    if not lines:
        raise SIPParseError("empty message")
    startLine = lines[0].rstrip("\r")
    if len(startLine) > limits.maxLineLength:
        raise MessageTooLarge("start line too long")
    message = _parseStartLine(startLine)
    headers = message.headers
    for raw in lines[1:]:
        line = raw[:-1] if raw.endswith("\r") else raw
        if len(line) > limits.maxLineLength:
            raise MessageTooLarge(
                "header line too long", request=message if isinstance(message, Request) else None
            )
        if not line:
            continue
        if line[0] == " " or line[0] == "\t":
            if not headers:
                raise SIPParseError("continuation line before the first header")
            name, value = headers[-1]
            headers[-1] = (name, (value + " " + line.strip(" \t")) if value else line.strip(" \t"))
            continue
        colon = line.find(":")
        if colon <= 0:
            raise SIPParseError(f"malformed header line {line[:40]!r}", request=_answerable(message))
        name = line[:colon].rstrip(" \t")
        if not isToken(name):
            raise SIPParseError(f"bad header name {name[:40]!r}", request=_answerable(message))
        headers.append((canonicalName(name), line[colon + 1:].strip(" \t")))
        if len(headers) > limits.maxHeaders:
            raise MessageTooLarge(f"more than {limits.maxHeaders} headers", request=_answerable(message))
    return message


def _answerable(message: AnyMessage) -> Optional[Request]:
    return message if isinstance(message, Request) else None


def _parseStartLine(line: str) -> AnyMessage:
    if line.startswith("SIP/") or line[:4].upper() == "SIP/":
        parts = line.split(" ", 2)
        if len(parts) < 2:
            raise SIPParseError("truncated status line")
        version, codeText = parts[0], parts[1]
        if version.upper() != SIP_VERSION:
            raise SIPParseError(f"unsupported SIP version {version!r}", 505)
        if len(codeText) != 3 or not codeText.isdigit() or not 100 <= int(codeText) <= 699:
            raise SIPParseError(f"bad status code {codeText!r}")
        reason = parts[2] if len(parts) == 3 else ""
        return Response(int(codeText), reason)
    parts = line.split(" ")
    if len(parts) != 3:
        raise SIPParseError("malformed request line")
    method, uriText, version = parts
    if not isToken(method):
        raise SIPParseError(f"bad method {method[:40]!r}")
    if not uriText:
        raise SIPParseError("empty Request-URI")
    request = Request(method, uriText)
    if version.upper() != SIP_VERSION:
        if version[:4].upper() == "SIP/":
            raise SIPParseError(f"unsupported SIP version {version!r}", 505, request=request)
        raise SIPParseError(f"bad SIP version {version[:20]!r}")
    return request


def _applyContentLength(message: AnyMessage, body: bytes, datagram: bool) -> None:
    values = [v for n, v in message.headers if n == "Content-Length"]
    answerable = _answerable(message)
    if len(values) > 1:
        raise SIPParseError("multiple Content-Length headers", request=answerable)
    if not values:
        if not datagram and body:
            raise SIPParseError("missing Content-Length on a stream transport", request=answerable)
        message.body = body
        return
    text = values[0].strip()
    if not text.isdigit() or len(text) > 9:
        raise SIPParseError(f"bad Content-Length {text[:20]!r}", request=answerable)
    length = int(text)
    if length > len(body):
        raise SIPParseError(
            f"body shorter than Content-Length ({len(body)} < {length})", request=answerable
        )
    message.body = body[:length]
