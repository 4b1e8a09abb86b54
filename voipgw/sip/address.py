# -*- test-case-name: tests.test_sip_message -*-
"""
Parsed forms of the structured headers: name-addr (From, To, Contact,
Route, Record-Route, Path), Via, CSeq and digest credentials/challenges.
"""

from __future__ import annotations

from typing import Final, Optional

from voipgw.sip.errors import SIPParseError
from voipgw.sip.grammar import (
    WSP, charTable, formatParams, isDigits, isToken, parseParams, plainParams, quote, quotedEnd,
    scan, splitCommas, splitOutside, unquote,
)
from voipgw.sip.uri import URI, isValidHost, splitHostPort

_TOKEN_TABLE: Final = charTable(
    frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
)
_HOST_TABLE: Final = charTable(
    frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
)
_DIGIT_TABLE: Final = charTable(frozenset("0123456789"))
#: Transport names already in upper case (most Vias carry one of these).
_UPPER_TRANSPORTS: Final = frozenset(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"])


class NameAddress:
    """
    C{["Display" ]<uri>;params} or an addr-spec C{uri;params}.

    In the addr-spec form the parameters after the URI belong to the header,
    not the URI (RFC 3261 §20.10).  C{Contact: *} parses with C{wildcard}
    set and no URI.
    """

    __slots__ = ("display", "uri", "params", "wildcard", "bracketed")

    def __init__(
        self,
        uri: Optional[URI],
        display: Optional[str] = None,
        params: Optional[dict[str, Optional[str]]] = None,
        wildcard: bool = False,
        bracketed: bool = True,
    ) -> None:
        self.uri = uri
        self.display = display
        self.params = params if params is not None else {}
        self.wildcard = wildcard
        self.bracketed = bracketed

    @classmethod
    def parse(cls, text: str) -> "NameAddress":
        plain = _plainNameAddress(text)
        if plain is not None:
            return plain
        return _parseNameAddress(text)

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        parts = []
        if self.display is not None:
            parts.append(quote(self.display) + " ")
        parts.append(f"<{self.uri}>")
        if self.params:
            parts.append(formatParams(self.params))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"NameAddress({str(self)!r})"

    @property
    def tag(self) -> Optional[str]:
        return self.params.get("tag")

    def copy(self) -> "NameAddress":
        return NameAddress(
            self.uri.copy() if self.uri else None, self.display, dict(self.params),
            self.wildcard, self.bracketed,
        )


def _parseNameAddress(text: str) -> NameAddress:
    """L{NameAddress.parse} for any form (the general way)."""
    text = text.strip()
    if text == "*":
        return NameAddress(None, wildcard=True)
    if not text:
        raise SIPParseError("empty address")
    lt = _findOutsideQuotes(text, "<")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SIPParseError(f"unterminated <> in {text[:60]!r}")
        displayText = text[:lt].strip(WSP)
        display: Optional[str] = None
        if displayText:
            if displayText[0] == '"':
                if quotedEnd(displayText, 0) != len(displayText):
                    raise SIPParseError(f"bad quoted display name {displayText[:60]!r}")
                display = unquote(displayText)
            else:
                words = displayText.split()
                for word in words:
                    if not isToken(word):
                        raise SIPParseError(f"bad display name {displayText[:60]!r}")
                display = " ".join(words)
        # LAQUOT and RAQUOT allow no whitespace inside the brackets.
        uri = URI.parse(text[lt + 1: gt])
        params = _params(text[gt + 1:])
        return NameAddress(uri, display, params, bracketed=True)
    if '"' in text:
        raise SIPParseError(f"display name without <uri> in {text[:60]!r}")
    uriText, semi, paramText = text.partition(";")
    uriText = uriText.rstrip(WSP)
    if any(c in uriText for c in ",?"):
        raise SIPParseError(
            f"addr-spec with reserved characters must use <> in {text[:60]!r}"
        )
    return NameAddress(URI.parse(uriText), None, _params(semi + paramText), bracketed=False)


def _plainNameAddress(text: str) -> Optional[NameAddress]:
    """
    L{NameAddress.parse} for the common forms C{<uri>;params} and
    C{"display" <uri>;params} (no backslash in the display name, plain
    parameters, nothing to strip); C{None} for anything else.  The URI is
    read by L{URI.parse}, which raises for a bad one exactly as the
    general way would.
    """
    n = len(text)
    if n == 0:
        return None
    display: Optional[str] = None
    first = text[0]
    if first == "<":
        lt = 0
    elif first == '"':
        quote = text.find('"', 1)
        if quote < 0 or text.find("\\", 1, quote) >= 0:
            return None
        lt = quote + 1
        while lt < n and (text[lt] == " " or text[lt] == "\t"):
            lt += 1
        if lt == n or text[lt] != "<":
            return None
        display = text[1:quote]
    else:
        return None
    gt = text.find(">", lt + 1)
    if gt < 0:
        return None
    params = plainParams(text, gt + 1)
    if params is None:
        return None
    return NameAddress(URI.parse(text[lt + 1:gt]), display, params, bracketed=True)


def _findOutsideQuotes(text: str, char: str) -> int:
    """Index of the first C{char} outside quoted-strings, or -1."""
    quote = text.find('"')
    if quote < 0:
        return text.find(char)
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            end = quotedEnd(text, i)
            if end < 0:
                raise SIPParseError(f"unterminated quoted string in {text[:60]!r}")
            i = end
            continue
        if c == char:
            return i
        i += 1
    return -1


def _params(text: str) -> dict[str, Optional[str]]:
    text = text.strip(WSP)
    if text and text[0] != ";":
        raise SIPParseError(f"unexpected text after address: {text[:60]!r}")
    try:
        return parseParams(text)
    except ValueError as e:
        raise SIPParseError(str(e)) from None


def parseAddressList(value: str) -> list[NameAddress]:
    """Parse a comma-separated list of addresses (Contact, Route, ...)."""
    return [NameAddress.parse(item) for item in splitCommas(value)]


class Via:
    """
    One Via entry: C{SIP/2.0/UDP host:port;branch=...;received=...;rport}.

    C{rport} is C{None} when absent, C{""} when present without a value
    (RFC 3581 request form) and the port text when filled in.
    """

    __slots__ = ("transport", "host", "port", "params")

    MAGIC_COOKIE = "z9hG4bK"

    def __init__(
        self, transport: str, host: str, port: Optional[int] = None,
        params: Optional[dict[str, Optional[str]]] = None,
    ) -> None:
        self.transport = transport if transport in _UPPER_TRANSPORTS else transport.upper()
        self.host = host
        self.port = port
        self.params = params if params is not None else {}

    @classmethod
    def parse(cls, text: str) -> "Via":
        plain = _plainVia(text)
        if plain is not None:
            return plain
        return _parseVia(text)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{formatParams(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    @property
    def branch(self) -> Optional[str]:
        return self.params.get("branch")

    @property
    def received(self) -> Optional[str]:
        return self.params.get("received")

    @property
    def rport(self) -> Optional[str]:
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""

    @property
    def sentByPort(self) -> int:
        if self.port is not None:
            return self.port
        return 5061 if self.transport == "TLS" else 5060

    @property
    def isRFC3261Branch(self) -> bool:
        branch = self.branch
        return branch is not None and branch.startswith(self.MAGIC_COOKIE)


def _parseVia(text: str) -> Via:
    """L{Via.parse} for any form (the general way)."""
    sentProtocol, sentBy = _splitViaProtocol(text)
    pieces = [p.strip(WSP) for p in sentProtocol.split("/")]
    if len(pieces) != 3 or not all(isToken(p) for p in pieces):
        raise SIPParseError(f"bad Via protocol {sentProtocol[:60]!r}")
    if pieces[0].upper() != "SIP" or pieces[1] != "2.0":
        raise SIPParseError(f"unsupported Via protocol {sentProtocol[:60]!r}")
    semi = sentBy.find(";")
    if semi < 0:
        hostport, paramText = sentBy, ""
    else:
        hostport, paramText = sentBy[:semi], sentBy[semi:]
    hostport = hostport.strip(WSP)
    # LWS is allowed around the colon of sent-by.
    if ":" in hostport and not hostport.startswith("["):
        h, _, p = hostport.partition(":")
        hostport = h.strip() + ":" + p.strip()
    elif hostport.startswith("[") and "]:" not in hostport and "]" in hostport:
        end = hostport.index("]")
        tail = hostport[end + 1:].strip()
        hostport = hostport[: end + 1] + (":" + tail.lstrip(":").strip() if tail else "")
    host, port = splitHostPort(hostport)
    try:
        params = parseParams(paramText)
    except ValueError as e:
        raise SIPParseError(str(e)) from None
    return Via(pieces[2], host, port, params)


def _plainVia(text: str) -> Optional[Via]:
    """
    L{Via.parse} for the common form C{SIP/2.0/TRANSPORT host[:port];params}
    (one space, a hostname or IPv4 host, plain parameters, no other
    whitespace); C{None} for anything else.
    """
    if not text.startswith("SIP/2.0/"):
        return None
    n = len(text)
    space = scan(text, 8, _TOKEN_TABLE)
    if space == 8 or space == n or text[space] != " ":
        return None
    i = scan(text, space + 1, _HOST_TABLE)
    if i == space + 1:
        return None
    host = text[space + 1:i]
    port: Optional[int] = None
    if i < n and text[i] == ":":
        portEnd = scan(text, i + 1, _DIGIT_TABLE)
        if portEnd == i + 1 or portEnd - i > 6:
            return None
        port = int(text[i + 1:portEnd])
        if port > 65535:
            return None
        i = portEnd
    params = plainParams(text, i)
    if params is None or not isValidHost(host):
        return None
    return Via(text[8:space], host, port, params)


def _splitViaProtocol(text: str) -> tuple[str, str]:
    """Split C{SIP / 2.0 / UDP host...}: protocol, then the sent-by part."""
    text = text.strip()
    slashes = 0
    i = 0
    n = len(text)
    while i < n and slashes < 2:
        if text[i] == "/":
            slashes += 1
        i += 1
    if slashes < 2:
        raise SIPParseError(f"bad Via {text[:60]!r}")
    while i < n and text[i] in WSP:
        i += 1
    start = i
    while i < n and text[i] not in WSP:
        i += 1
    if start == i:
        raise SIPParseError(f"Via without transport: {text[:60]!r}")
    return text[:i], text[i:].strip(WSP)


class CSeq:
    """C{CSeq: 4711 INVITE}."""

    __slots__ = ("number", "method")

    def __init__(self, number: int, method: str) -> None:
        self.number = number
        self.method = method

    @classmethod
    def parse(cls, text: str) -> "CSeq":
        space = scan(text, 0, _DIGIT_TABLE)
        if 0 < space <= 10 and space < len(text) and text[space] == " ":
            method = text[space + 1:]
            if isToken(method):
                number = int(text[:space])
                if number < 0x80000000:
                    return CSeq(number, method)
        parts = text.split()
        if len(parts) != 2 or not isDigits(parts[0]) or not isToken(parts[1]):
            raise SIPParseError(f"bad CSeq {text[:60]!r}")
        digits = parts[0].lstrip("0")
        if len(digits) > 10 or int(digits or "0") >= 2**31:
            raise SIPParseError(f"CSeq number out of range in {text[:60]!r}")
        number = int(digits or "0")
        return CSeq(number, parts[1])

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


class DigestParams:
    """
    A challenge or credentials: C{Digest realm="x", nonce="y", ...}.

    C{params} maps lower-cased names to unquoted values; a parameter given
    twice is rejected, as RFC 7616 demands.
    """

    __slots__ = ("scheme", "params")

    def __init__(self, scheme: str, params: dict[str, str]) -> None:
        self.scheme = scheme
        self.params = params

    @classmethod
    def parse(cls, text: str) -> "DigestParams":
        text = text.strip(WSP)
        scheme, _, rest = text.partition(" ")
        if not scheme or not isToken(scheme):
            raise SIPParseError(f"bad authentication scheme in {text[:60]!r}")
        params: dict[str, str] = {}
        for item in splitOutside(rest, ","):
            item = item.strip()
            if not item:
                continue
            name, eq, value = item.partition("=")
            name = name.strip(WSP).lower()
            if not eq or not name or not isToken(name):
                raise SIPParseError(f"bad authentication parameter {item[:60]!r}")
            if name in params:
                raise SIPParseError(f"duplicate authentication parameter {name[:40]!r}")
            value = value.strip(WSP)
            if value[:1] == '"':
                if quotedEnd(value, 0) != len(value):
                    raise SIPParseError(f"bad quoted value for {name[:40]!r}")
            elif not isToken(value):
                raise SIPParseError(f"bad value for authentication parameter {name[:40]!r}")
            params[name] = unquote(value)
        return DigestParams(scheme, params)

    def format(self, quoted: tuple[str, ...] = ()) -> str:
        items = []
        for name, value in self.params.items():
            if name in quoted or not isToken(value):
                items.append(f"{name}={quote(value)}")
            else:
                items.append(f"{name}={value}")
        return f"{self.scheme} " + ", ".join(items)


def lenientVia(text: str) -> Optional[Via]:
    """
    The topmost Via entry of C{text} parsed as well as it can be, for
    answering a malformed request: C{None} if even its sent-protocol and
    sent-by are unusable.  Parameters that do not parse are skipped, and any
    protocol name and version are taken (so C{SIP/7.0/UDP} can be answered
    with a 505).
    """
    items = splitCommas(text)
    if not items:
        return None
    first = items[0]
    try:
        return Via.parse(first)
    except SIPParseError:
        pass
    try:
        sentProtocol, sentBy = _splitViaProtocol(first)
        pieces = [p.strip(WSP) for p in sentProtocol.split("/")]
        if len(pieces) != 3 or not all(isToken(p) for p in pieces):
            return None
        hostport, _, paramText = sentBy.partition(";")
        host, port = splitHostPort(hostport.strip(WSP))
    except SIPParseError:
        return None
    params: dict[str, Optional[str]] = {}
    for piece in paramText.split(";"):
        try:
            params.update(parseParams(piece))
        except ValueError:
            continue
    return Via(pieces[2], host, port, params)
