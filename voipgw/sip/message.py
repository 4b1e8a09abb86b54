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

from typing import Final, Iterable, Optional, Union, cast

from voipgw.sip.address import CSeq, NameAddress, Via, lenientVia, parseAddressList
from voipgw.sip.errors import MessageTooLarge, SIPParseError
from voipgw.sip.grammar import charTable, isDigits, isToken, scan, splitCommas
from voipgw.sip.headers import KNOWN_NAMES, LIST_HEADERS, SINGLE_HEADERS, canonicalName
from voipgw.sip.uri import URI

SIP_VERSION: Final = "SIP/2.0"

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

def _headerText(value: object) -> str:
    """A header value as text; CR and LF would split the header, so refuse them."""
    text = str(value)
    if "\r" in text or "\n" in text:
        raise ValueError(f"line break in header value {text[:60]!r}")
    return text


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



def _splitLines(values: list[str]) -> list[str]:
    """The comma-separated elements of a list header's lines, in order."""
    if len(values) == 1:
        return splitCommas(values[0])
    out: list[str] = []
    for v in values:
        out.extend(splitCommas(v))
    return out

class Message:
    """Common part of L{Request} and L{Response}."""

    __slots__ = ("headers", "body", "_cache")

    def __init__(self, headers: Optional[list[tuple[str, str]]] = None, body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body
        self._cache: dict[str, object] = {}

    # -- raw header access -------------------------------------------------
    #
    # Known headers are stored under their canonical name (compact forms
    # expanded); unknown ones as written, and are matched case-insensitively.

    def _indices(self, name: str) -> tuple[str, list[int]]:
        """The canonical name and the positions of the C{name} headers."""
        canonical = canonicalName(name)
        if canonical in KNOWN_NAMES:
            return canonical, [i for i, (n, _) in enumerate(self.headers) if n == canonical]
        lower = canonical.lower()
        return canonical, [i for i, (n, _) in enumerate(self.headers) if n.lower() == lower]

    def getHeader(self, name: str) -> Optional[str]:
        """The value of the first header called C{name} (any spelling), or C{None}."""
        canonical = canonicalName(name)
        if canonical in KNOWN_NAMES:
            for n, v in self.headers:
                if n == canonical:
                    return v
            return None
        lower = canonical.lower()
        for n, v in self.headers:
            if n.lower() == lower:
                return v
        return None

    def _rawValues(self, name: str) -> tuple[str, list[str]]:
        canonical = canonicalName(name)
        if canonical in KNOWN_NAMES:
            return canonical, [v for n, v in self.headers if n == canonical]
        lower = canonical.lower()
        return canonical, [v for n, v in self.headers if n.lower() == lower]

    def getHeaderValues(self, name: str) -> list[str]:
        """
        Every value of C{name}: all header lines, and for list headers each
        comma-separated element (commas inside quotes and <> respected).
        """
        canonical, values = self._rawValues(name)
        if canonical in LIST_HEADERS:
            return _splitLines(values)
        return values

    def hasHeader(self, name: str) -> bool:
        return self.getHeader(name) is not None

    def _replace(self, name: str, lines: list[tuple[str, str]]) -> None:
        canonical, positions = self._indices(name)
        if not positions:
            self.headers.extend(lines)
        else:
            first = positions[0]
            drop = set(positions)
            self.headers = (
                [h for i, h in enumerate(self.headers[:first]) if i not in drop]
                + lines
                + [h for i, h in enumerate(self.headers[first:], first) if i not in drop]
            )
        self._forget(canonical)

    def _forget(self, canonical: str) -> None:
        self._cache.pop(canonical, None)

    def setHeader(self, name: str, value: object) -> None:
        """Replace every C{name} header by one with C{value} (in the first one's place)."""
        self._replace(name, [(canonicalName(name), _headerText(value))])

    def addHeader(self, name: str, value: object, first: bool = False) -> None:
        """Add a header line, at the end or (C{first}) before the others of its name."""
        canonical, positions = self._indices(name)
        line = (canonical, _headerText(value))
        if first and positions:
            self.headers.insert(positions[0], line)
        else:
            self.headers.append(line)
        self._forget(canonical)

    def removeHeader(self, name: str) -> None:
        canonical, positions = self._indices(name)
        if positions:
            drop = set(positions)
            self.headers = [h for i, h in enumerate(self.headers) if i not in drop]
        self._forget(canonical)

    def setHeaderValues(self, name: str, values: Iterable[object]) -> None:
        """Replace every C{name} header by one line per value, in place of the first."""
        canonical = canonicalName(name)
        self._replace(name, [(canonical, _headerText(v)) for v in values])

    # -- structured access (parsed on demand, cached) ----------------------
    #
    # Each accessor looks in C{_cache} first; a parse error is raised and
    # nothing cached, so a later access raises it again.

    def _knownValue(self, canonical: str) -> str:
        """The first value of a known header, by canonical name; raises if absent."""
        for n, v in self.headers:
            if n == canonical:
                return v
        raise SIPParseError(f"missing {canonical} header")

    def _knownValues(self, canonical: str) -> list[str]:
        """L{getHeaderValues} for a known list header, by canonical name."""
        return _splitLines([v for n, v in self.headers if n == canonical])

    @property
    def vias(self) -> list[Via]:
        """All Via entries, topmost first."""
        cached = self._cache.get("Via")
        if cached is not None:
            return cast("list[Via]", cached)
        vias = [Via.parse(v) for v in self._knownValues("Via")]
        self._cache["Via"] = vias
        return vias

    @property
    def topVia(self) -> Via:
        vias = self.vias
        if not vias:
            raise SIPParseError("missing Via header")
        return vias[0]

    def _address(self, canonical: str) -> NameAddress:
        """The parsed From or To header (cached)."""
        cached = self._cache.get(canonical)
        if cached is not None:
            return cast(NameAddress, cached)
        address = NameAddress.parse(self._knownValue(canonical))
        self._cache[canonical] = address
        return address

    @property
    def fromAddress(self) -> NameAddress:
        return self._address("From")

    @property
    def toAddress(self) -> NameAddress:
        return self._address("To")

    @property
    def callId(self) -> str:
        cached = self._cache.get("Call-ID")
        if cached is not None:
            return cast(str, cached)
        callId = self._knownValue("Call-ID").strip()
        self._cache["Call-ID"] = callId
        return callId

    @property
    def cseq(self) -> CSeq:
        cached = self._cache.get("CSeq")
        if cached is not None:
            return cast(CSeq, cached)
        cseq = CSeq.parse(self._knownValue("CSeq"))
        self._cache["CSeq"] = cseq
        return cseq

    def _addressList(self, canonical: str) -> list[NameAddress]:
        """The parsed Route or Record-Route entries (cached)."""
        cached = self._cache.get(canonical)
        if cached is not None:
            return cast("list[NameAddress]", cached)
        addresses = [NameAddress.parse(v) for v in self._knownValues(canonical)]
        self._cache[canonical] = addresses
        return addresses

    @property
    def contacts(self) -> list[NameAddress]:
        cached = self._cache.get("Contact")
        if cached is not None:
            return cast("list[NameAddress]", cached)
        contacts = parseAddressList(",".join(self._knownValues("Contact")))
        self._cache["Contact"] = contacts
        return contacts

    @property
    def routes(self) -> list[NameAddress]:
        return self._addressList("Route")

    @property
    def recordRoutes(self) -> list[NameAddress]:
        return self._addressList("Record-Route")

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
        # one join over the pieces: no intermediate string per header line
        parts = [self.startLine()]
        for name, value in self.headers:
            if name != "Content-Length":
                parts.append("\r\n")
                parts.append(name)
                parts.append(": ")
                parts.append(value)
        body = self.body
        parts.append("\r\nContent-Length: ")
        parts.append(str(len(body)))
        parts.append("\r\n\r\n")
        data = "".join(parts).encode("utf-8", "surrogateescape")
        return data + body if body else data

    def __bytes__(self) -> bytes:
        return self.toBytes()

    def validate(self) -> None:
        """
        Check the headers every request and response must carry (RFC 3261
        §8.1.1): Via, From, To, Call-ID, CSeq; parse each; reject duplicates
        of the single-valued ones.  Raises L{SIPParseError}.
        """
        seen = 0
        duplicate = False
        bits = _HEADER_BITS
        for name, _ in self.headers:
            bit = bits.get(name, 0)
            if bit:
                if seen & bit and bit != _VIA_BIT:
                    duplicate = True
                seen |= bit
        if duplicate or seen & _MANDATORY_BITS != _MANDATORY_BITS:
            self._countFault()
        for name in _STRUCTURED:
            try:
                self._parseStructured(name)
            except SIPParseError as e:
                raise SIPParseError(f"bad {name} header: {e.reason}", e.status) from None
        callId = self.callId
        if not callId or scan(callId, 0, _CALLID_TABLE) != len(callId):
            raise SIPParseError(f"bad Call-ID {callId[:60]!r}")

    def _countFault(self) -> None:
        """Raise for a duplicated single-valued or a missing mandatory header."""
        counts: dict[str, int] = {}
        hasVia = False
        for name, _ in self.headers:
            if name in SINGLE_HEADERS:
                counts[name] = counts.get(name, 0) + 1
            elif name == "Via":
                hasVia = True
        duplicated = [name for name, count in counts.items() if count > 1]
        if duplicated:
            raise SIPParseError("multiple " + ", ".join(duplicated) + " headers")
        missing = [n for n in _MANDATORY if n != "Via" and n not in counts]
        if not hasVia:
            missing.insert(0, "Via")
        if missing:
            raise SIPParseError(
                "missing " + ", ".join(missing) + " header" + ("s" if len(missing) > 1 else "")
            )

    def _parseStructured(self, name: str) -> None:
        """Parse (and cache) the structured header C{name} of L{_STRUCTURED}."""
        if name == "Via":
            self.vias  # noqa: B018
        elif name == "CSeq":
            self.cseq  # noqa: B018
        else:
            self._address(name)


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

    @property
    def receivedURIText(self) -> Optional[str]:
        """The Request-URI as written in the parsed message; C{None} once replaced."""
        return self._uriText

    def startLine(self) -> str:
        uriText = str(self.uri) if self.uri is not None else self._uriText
        return f"{self.method} {uriText} {SIP_VERSION}"

    @property
    def maxForwards(self) -> Optional[int]:
        """The Max-Forwards value, or C{None} when the header is absent."""
        cache = self._cache
        if "Max-Forwards" in cache:
            return cast(Optional[int], cache["Max-Forwards"])
        maxForwards = _parseMaxForwards(self.headers)
        cache["Max-Forwards"] = maxForwards
        return maxForwards

    def validate(self) -> None:
        super().validate()
        try:
            uri = self.requestURI
        except SIPParseError as e:
            raise SIPParseError(f"bad Request-URI: {e.reason}") from None
        if uri.headers is not None and uri.isSIP:
            # RFC 3261 §19.1.1 table 1: headers are not allowed in a Request-URI.
            raise SIPParseError("escaped headers in the Request-URI")
        if self.cseq.method != self.method:
            raise SIPParseError(
                "CSeq method does not match the request method",
                400 if self.method in KNOWN_METHODS else 501,
            )
        try:
            self.maxForwards  # noqa: B018
        except SIPParseError as e:
            raise SIPParseError(f"bad Max-Forwards header: {e.reason}") from None

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

#: callid = word [ "@" word ] (RFC 3261 §25.1)
_CALLID_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "-.!%*_+`'~()<>:\\\"/[]?{}@"
)
_CALLID_TABLE: Final = charTable(_CALLID_CHARS)


def responseTo(
    request: Request, code: int, reason: Optional[str] = None, toTag: Optional[str] = None
) -> Response:
    """
    Build a response to C{request} (RFC 3261 §8.2.6): copy Via (all, in
    order), From, To (adding C{toTag} if it has none), Call-ID and CSeq.
    """
    headers: list[tuple[str, str]] = []
    seen = set()
    for name, value in request.headers:
        if name == "Via":
            headers.append((name, value))
        elif name in seen:
            continue
        elif name == "From" or name == "Call-ID" or name == "CSeq":
            seen.add(name)
            headers.append((name, value))
        elif name == "To":
            seen.add(name)
            if toTag is not None and code != 100 and ";tag=" not in value.replace(" ", "").lower():
                try:
                    if request.toAddress.tag is None:
                        value = value + ";tag=" + toTag
                except SIPParseError:
                    pass
            headers.append((name, value))
    response = Response(code, reason, headers)
    vias = request._cache.get("Via")
    if vias is not None:
        # The Via lines are copied verbatim: share their parsed form (read
        # to route the response, RFC 3261 §18.2.2) instead of parsing again.
        response._cache["Via"] = vias
    return response


# -- parsing ------------------------------------------------------------------

#: Methods this layer knows (RFC 3261 and the common extensions); an unknown
#: method with a mismatched CSeq deserves a 501 (RFC 4475 §3.1.2.18).
KNOWN_METHODS = frozenset(
    ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
     "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"]
)

_MANDATORY: Final = ("Via", "From", "To", "Call-ID", "CSeq")
#: A bit for each single-valued header and for Via: L{Message.validate}
#: looks for duplicates and missing headers with one dictionary lookup per
#: header line.
_HEADER_BITS: Final[dict[str, int]] = {
    name: 1 << i for i, name in enumerate(sorted(SINGLE_HEADERS | {"Via"}))
}
_VIA_BIT: Final = _HEADER_BITS["Via"]
_MANDATORY_BITS: Final = sum(_HEADER_BITS[name] for name in _MANDATORY)
#: The headers L{Message.validate} parses, in order.
_STRUCTURED: Final = ("Via", "From", "To", "CSeq")

#: Raw header name (as written on the wire) -> canonical name, for names
#: already seen to be tokens.  Bounded: cleared when it grows too large.
_NAME_CACHE: Final[dict[str, str]] = {}
_NAME_CACHE_MAX: Final = 4096


def _headerName(raw: str) -> Optional[str]:
    """The canonical name for a raw header name, or C{None} if not a token."""
    name = _NAME_CACHE.get(raw)
    if name is not None:
        return name
    stripped = raw.rstrip(" \t")
    if not isToken(stripped):
        return None
    name = canonicalName(stripped)
    if len(_NAME_CACHE) >= _NAME_CACHE_MAX:
        _NAME_CACHE.clear()
    _NAME_CACHE[raw] = name
    return name


def _findHeaderEnd(data: bytes) -> tuple[int, int]:
    """Index where the header block ends and where the body starts, or (-1, -1)."""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        bare = data.find(b"\n\n", 0, end)
        if bare < 0:
            return end, end + 4
        return bare, bare + 2
    end = data.find(b"\n\n")
    if end >= 0:
        return end, end + 2
    return -1, -1


def parseMessage(
    data: bytes, limits: Limits = DEFAULT_LIMITS, datagram: bool = True
) -> AnyMessage:
    """
    Parse and validate one complete message.

    With C{datagram} (UDP), a missing Content-Length means "the rest of the
    datagram"; a body longer than declared is truncated and a shorter one is
    an error (RFC 3261 §18.3).  On a stream, Content-Length is mandatory.

    Raises L{SIPParseError} (and nothing else) for any fault: its C{reason}
    names the fault, C{status} is the response code it deserves, and
    C{request} holds the partly parsed request when a response can be built
    (the start line is a request line and the request carries a usable top
    Via plus From, To, Call-ID and CSeq to copy).
    """
    try:
        return _parseMessage(data, limits, datagram)
    except SIPParseError:
        raise
    except (ValueError, LookupError, UnicodeError, RecursionError, OverflowError,
            TypeError, AttributeError) as e:  # pragma: no cover - a parser bug
        raise SIPParseError(f"unparseable message ({e.__class__.__name__})") from None


def _parseMessage(data: bytes, limits: Limits, datagram: bool) -> AnyMessage:
    """L{parseMessage} without the last-resort conversion of internal errors."""
    if len(data) > limits.maxMessageSize:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds {limits.maxMessageSize}")
    if data[:1] in (b"\r", b"\n"):
        # Tolerate CRLFs before the start line (RFC 3261 §7.5).
        data = data.lstrip(b"\r\n")
    headEnd, bodyStart = _findHeaderEnd(data)
    if headEnd < 0:
        # The empty line may be missing only when there is nothing at all.
        raise SIPParseError("truncated message: no empty line after the headers")
    head = data[:headEnd]
    body = data[bodyStart:]
    message, fault = _parseHead(head, limits)
    if fault is None:
        fault = _applyContentLength(message, body, datagram)
    if fault is None:
        try:
            message.validate()
        except SIPParseError as e:
            fault = e
    if fault is not None:
        if isinstance(fault, MessageTooLarge):
            raise MessageTooLarge(fault.reason, request=_answerable(message))
        raise SIPParseError(fault.reason, fault.status, _answerable(message))
    return message


class _Lines:
    """
    The lines of a header block, read in place: L{advance} moves to the
    next line, C{text[start:end]} without its line end.  Lines end in CRLF
    or, if any line ends in a bare LF, in either (then a CR before the end
    of the last line is dropped too).  C{bareCR} records a CR inside a line.
    """

    __slots__ = ("text", "start", "end", "following", "bareLF", "bareCR")

    def __init__(self, text: str) -> None:
        self.text = text
        self.start = 0
        self.end = 0
        self.following = 0
        self.bareLF = False
        self.bareCR = False

    def advance(self) -> bool:
        """Move to the next line; False after the last one."""
        text = self.text
        n = len(text)
        start = self.following
        if start > n:
            return False
        newline = text.find("\n", start)
        if newline < 0:
            end = n
            # The last line: every LF is behind, so bareLF is final.
            if self.bareLF and end > start and text[end - 1] == "\r":
                end -= 1
            self.following = n + 1
        else:
            if newline > start and text[newline - 1] == "\r":
                end = newline - 1
            else:
                end = newline
                self.bareLF = True
            self.following = newline + 1
        if not self.bareCR and text.find("\r", start, end) >= 0:
            self.bareCR = True
        self.start = start
        self.end = end
        return True


def _parseHead(head: bytes, limits: Limits) -> tuple[AnyMessage, Optional[SIPParseError]]:
    """
    Parse the start line and header lines.  Faults that still leave the
    message answerable are returned (the first one) rather than raised, so
    the rest of the headers are read and a response can be built.
    """
    text = head.decode("utf-8", "surrogateescape")
    lines = _Lines(text)
    # Tolerate leading CRLFs before the start line (RFC 3261 §7.5).
    while True:
        if not lines.advance():
            raise SIPParseError("empty message")
        if lines.end > lines.start:
            break
    if lines.end - lines.start > limits.maxLineLength:
        raise MessageTooLarge("start line too long")
    message, startFault = _parseStartLine(text[lines.start:lines.end])
    headers = message.headers
    maxLine = limits.maxLineLength
    maxHeaders = limits.maxHeaders
    fault: Optional[SIPParseError] = None
    lastIndex = -1
    while lines.advance():
        lastIndex, lineFault = _readHeaderLine(text, lines.start, lines.end, headers, lastIndex, maxLine)
        if lineFault is not None and fault is None:
            fault = lineFault
        if lastIndex >= maxHeaders:
            raise MessageTooLarge(f"more than {maxHeaders} headers")
    if startFault is not None:
        return message, startFault
    if lines.bareCR:
        return message, SIPParseError("bare CR in the header block")
    return message, fault


def _readHeaderLine(
    text: str, start: int, end: int, headers: list[tuple[str, str]], lastIndex: int, maxLine: int
) -> tuple[int, Optional[SIPParseError]]:
    """
    Add the header line C{text[start:end]} to C{headers}, or fold it into
    the one at C{lastIndex}.  Returns the index of the header the next
    continuation line extends (-1 for none) and the line's fault, if any.
    """
    if start == end:
        # A line of nothing inside the header block: the block ended early.
        return lastIndex, SIPParseError("empty line inside the header block")
    if end - start > maxLine:
        return -1, MessageTooLarge("header line too long")
    if text[start] == " " or text[start] == "\t":
        # LWS folding (RFC 3261 §7.3.1): the line continues the previous
        # header; the fold and the whitespace around it become one SP.
        if lastIndex < 0:
            return lastIndex, SIPParseError("continuation line before the first header")
        return lastIndex, _fold(headers, lastIndex, text[start:end].strip(" \t"), maxLine)
    colon = text.find(":", start, end)
    headerName = _headerName(text[start:colon]) if colon > start else None
    if headerName is None:
        if colon <= start:
            return -1, SIPParseError("malformed header line")
        return -1, SIPParseError(f"bad header name {text[start:min(colon, start + 40)]!r}")
    valueStart = colon + 1
    while valueStart < end and (text[valueStart] == " " or text[valueStart] == "\t"):
        valueStart += 1
    valueEnd = end
    while valueEnd > valueStart and (text[valueEnd - 1] == " " or text[valueEnd - 1] == "\t"):
        valueEnd -= 1
    headers.append((headerName, text[valueStart:valueEnd]))
    return len(headers) - 1, None


def _fold(headers: list[tuple[str, str]], index: int, piece: str, maxLine: int) -> Optional[SIPParseError]:
    """Append a continuation line's text C{piece} to the header at C{index}."""
    if not piece:
        return None
    name, value = headers[index]
    value = f"{value} {piece}" if value else piece
    headers[index] = (name, value)
    if len(value) > maxLine:
        return MessageTooLarge(f"folded {name} header too long")
    return None


def _parseMaxForwards(headers: list[tuple[str, str]]) -> Optional[int]:
    """The first Max-Forwards value of C{headers}, or C{None} when absent."""
    for name, value in headers:
        if name == "Max-Forwards":
            value = value.strip()
            digits = value.lstrip("0") or "0"
            number = int(digits) if isDigits(value) and len(digits) <= 3 else 256
            if number > 255:
                raise SIPParseError(f"bad Max-Forwards {value[:20]!r}")
            return number
    return None


def _answerable(message: AnyMessage) -> Optional[Request]:
    """
    C{message} if a response can be built for it: a request whose top Via
    is usable and which carries From, To, Call-ID and CSeq.
    """
    if not isinstance(message, Request):
        return None
    present = {n for n, _ in message.headers if n in _MANDATORY}
    if len(present) != len(_MANDATORY):
        return None
    try:
        message.topVia  # noqa: B018
    except SIPParseError:
        via = lenientVia(message.getHeader("Via") or "")
        if via is None:
            return None
        message._cache["Via"] = [via]
    return message


def _parseStartLine(line: str) -> tuple[AnyMessage, Optional[SIPParseError]]:
    if line[:4].upper() == "SIP/":
        parts = line.split(" ", 2)
        if len(parts) < 2:
            raise SIPParseError("truncated status line")
        version, codeText = parts[0], parts[1]
        if version.upper() != SIP_VERSION:
            raise SIPParseError(f"unsupported SIP version {version[:20]!r}", 505)
        if len(codeText) != 3 or not isDigits(codeText) or not 100 <= int(codeText) <= 699:
            raise SIPParseError(f"bad status code {codeText[:20]!r}")
        reason = parts[2] if len(parts) == 3 else ""
        if _hasControl(reason):
            raise SIPParseError("control character in reason phrase")
        return Response(int(codeText), reason), None
    parts = line.split(" ")
    if len(parts) == 3 and parts[0] and parts[1] and parts[2]:
        method, uriText, version = parts[0], parts[1], parts[2]
        fault = None
    else:
        # Not exactly "METHOD SP Request-URI SP SIP-Version": read it
        # liberally so the fault can still be answered (RFC 4475 §3.1.2.8-10).
        words = line.split()
        if len(words) < 3 or words[-1][:4].upper() != "SIP/":
            raise SIPParseError("malformed request line")
        method, uriText, version = words[0], " ".join(words[1:-1]), words[-1]
        if len(words) > 3:
            fault = SIPParseError("whitespace inside the Request-URI")
        else:
            fault = SIPParseError("extra whitespace in the request line")
    if not isToken(method):
        raise SIPParseError(f"bad method {method[:40]!r}")
    request = Request(method, uriText)
    if version != SIP_VERSION and version.upper() != SIP_VERSION:
        if version[:4].upper() == "SIP/":
            return request, SIPParseError(f"unsupported SIP version {version[:20]!r}", 505)
        raise SIPParseError(f"bad SIP version {version[:20]!r}")
    return request, fault


def _hasControl(text: str) -> bool:
    """True if C{text} holds a control character other than HTAB."""
    for i in range(len(text)):
        code = ord(text[i])
        if code < 32 and code != 9:
            return True
    return False


def _applyContentLength(message: AnyMessage, body: bytes, datagram: bool) -> Optional[SIPParseError]:
    values = [v for n, v in message.headers if n == "Content-Length"]
    if len(values) > 1:
        return SIPParseError("multiple Content-Length headers")
    if not values:
        if not datagram:
            return SIPParseError("missing Content-Length on a stream transport")
        message.body = body
        return None
    text = values[0]
    if not isDigits(text) or len(text) > 9:
        return SIPParseError(f"bad Content-Length {text[:20]!r}")
    length = int(text)
    if length > len(body):
        return SIPParseError(f"body shorter than Content-Length ({len(body)} < {length})")
    message.body = body[:length] if length < len(body) else body
    return None
