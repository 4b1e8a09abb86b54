# -*- test-case-name: tests.test_sip_message -*-
"""
Parsed forms of the structured headers: name-addr (From, To, Contact,
Route, Record-Route, Path), Via, CSeq and digest credentials/challenges.
"""

from __future__ import annotations

from typing import Optional

from voipgw.sip.errors import SIPParseError
from voipgw.sip.grammar import (
    WSP, formatParams, isToken, parseParams, quote, splitCommas, splitOutside, unquote,
)
from voipgw.sip.uri import URI, splitHostPort


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
        text = text.strip()
        if text == "*":
            return cls(None, wildcard=True)
        if not text:
            raise SIPParseError("empty address")
        lt = _findOutsideQuotes(text, "<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise SIPParseError(f"unterminated <> in {text!r}")
            displayText = text[:lt].strip()
            display: Optional[str] = None
            if displayText:
                if displayText.startswith('"'):
                    if not displayText.endswith('"') or len(displayText) < 2:
                        raise SIPParseError(f"unbalanced quotes in display name {displayText!r}")
                    display = unquote(displayText)
                else:
                    for word in displayText.split():
                        if not isToken(word):
                            raise SIPParseError(f"bad display name {displayText!r}")
                    display = " ".join(displayText.split())
            uri = URI.parse(text[lt + 1: gt].strip())
            params = _params(text[gt + 1:])
            return cls(uri, display, params, bracketed=True)
        if '"' in text:
            raise SIPParseError(f"display name without <uri> in {text!r}")
        uriText, _, paramText = text.partition(";")
        uriText = uriText.strip()
        if any(c in uriText for c in ",?"):
            raise SIPParseError(f"addr-spec with reserved characters must use <> in {text!r}")
        return cls(URI.parse(uriText), None, _params(";" + paramText if paramText else ""), bracketed=False)

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


def _findOutsideQuotes(text: str, char: str) -> int:
    inQuote = False
    i = 0
    while i < len(text):
        c = text[i]
        if inQuote:
            if c == "\\":
                i += 1
            elif c == '"':
                inQuote = False
        elif c == '"':
            inQuote = True
        elif c == char:
            return i
        i += 1
    if inQuote:
        raise SIPParseError(f"unterminated quoted string in {text!r}")
    return -1


def _params(text: str) -> dict[str, Optional[str]]:
    text = text.strip()
    if text and not text.startswith(";"):
        raise SIPParseError(f"unexpected text after address: {text!r}")
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
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params = params if params is not None else {}

    @classmethod
    def parse(cls, text: str) -> "Via":
        sentProtocol, sentBy = _splitViaProtocol(text)
        pieces = [p.strip(WSP) for p in sentProtocol.split("/")]
        if len(pieces) != 3 or not all(isToken(p) for p in pieces):
            raise SIPParseError(f"bad Via protocol {sentProtocol!r}")
        if pieces[0].upper() != "SIP" or pieces[1] != "2.0":
            raise SIPParseError(f"unsupported Via protocol {sentProtocol!r}")
        hostport, _, paramText = sentBy.partition(";")
        hostport = hostport.strip()
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
        return cls(pieces[2], host, port, params)

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
        return bool(branch) and branch.startswith(self.MAGIC_COOKIE)  # type: ignore[union-attr]


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
        raise SIPParseError(f"bad Via {text!r}")
    while i < n and text[i] in WSP:
        i += 1
    start = i
    while i < n and text[i] not in WSP:
        i += 1
    if start == i:
        raise SIPParseError(f"Via without transport: {text!r}")
    return text[:i], text[i:].strip(WSP)


class CSeq:
    """C{CSeq: 4711 INVITE}."""

    __slots__ = ("number", "method")

    def __init__(self, number: int, method: str) -> None:
        self.number = number
        self.method = method

    @classmethod
    def parse(cls, text: str) -> "CSeq":
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or not isToken(parts[1]):
            raise SIPParseError(f"bad CSeq {text!r}")
        number = int(parts[0])
        if number >= 2**31:
            raise SIPParseError(f"CSeq number out of range in {text!r}")
        return cls(number, parts[1])

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
        text = text.strip()
        scheme, _, rest = text.partition(" ")
        if not scheme or not isToken(scheme):
            raise SIPParseError(f"bad authentication scheme in {text!r}")
        params: dict[str, str] = {}
        for item in splitOutside(rest, ","):
            item = item.strip()
            if not item:
                continue
            name, eq, value = item.partition("=")
            name = name.strip().lower()
            if not eq or not name or not isToken(name):
                raise SIPParseError(f"bad authentication parameter {item!r}")
            if name in params:
                raise SIPParseError(f"duplicate authentication parameter {name!r}")
            value = value.strip()
            if value.startswith('"') and (len(value) < 2 or not value.endswith('"')):
                raise SIPParseError(f"unterminated quoted value for {name!r}")
            params[name] = unquote(value)
        return cls(scheme, params)

    def format(self, quoted: tuple[str, ...] = ()) -> str:
        items = []
        for name, value in self.params.items():
            if name in quoted or not isToken(value):
                items.append(f"{name}={quote(value)}")
            else:
                items.append(f"{name}={value}")
        return f"{self.scheme} " + ", ".join(items)
