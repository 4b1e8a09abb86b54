# -*- test-case-name: tests.test_sip_uri -*-
"""
SIP, SIPS and TEL URIs (RFC 3261 §19.1, RFC 3966), and opaque URIs of any
other scheme (so a message carrying one can be answered C{416}).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Optional
from urllib.parse import unquote as _percentUnquote

from voipgw.sip.errors import SIPParseError
from voipgw.sip.grammar import charTable, formatParams, isDigits, plainParams, scan

_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):(.*)", re.S)
_HOSTNAME_RE: Final = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?")
_IPV4_RE: Final = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_ALNUM: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_UNRESERVED: Final = _ALNUM | frozenset("-_.!~*'()")
#: RFC 3261 user: unreserved / escaped / user-unreserved; C{#} is tolerated
#: because dial strings (C{*21#}) are commonly sent unescaped.
_USER_CHARS: Final = _UNRESERVED | frozenset("%&=+$,;?/#")
_PASSWORD_CHARS: Final = _UNRESERVED | frozenset("%&=+$,")
#: paramchar = param-unreserved / unreserved / escaped
_PARAM_CHARS: Final = _UNRESERVED | frozenset("%[]/:&+$")
#: hname / hvalue characters, with the C{=} and C{&} that separate them
_HEADER_CHARS: Final = _UNRESERVED | frozenset("%[]/?:+$=&")
_TEL_CHARS: Final = _HEX | frozenset("*#+-.()")
_OPAQUE_BAD: Final = frozenset(' \t\r\n<>"{}|\\^`') | frozenset(chr(c) for c in range(32)) | {"\x7f"}

DEFAULT_PORTS = {"sip": 5060, "sips": 5061}

_UPPER: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: For L{_plainSIP}: user characters without escapes, hostname and IPv4
#: characters, parameter names (lower-case) and values without escapes.
_PLAIN_USER_TABLE: Final = charTable(_USER_CHARS - {"%"})
_HOST_TABLE: Final = charTable(_ALNUM | frozenset("-."))
_DIGIT_TABLE: Final = charTable(frozenset("0123456789"))
_PLAIN_PARAM_NAME_TABLE: Final = charTable(_PARAM_CHARS - _UPPER - {"%"})
_PLAIN_PARAM_TABLE: Final = charTable(_PARAM_CHARS - {"%"})


def unescape(value: str) -> str:
    """Resolve C{%XX} escapes (RFC 3261 §19.1.4 compares unescaped)."""
    return _percentUnquote(value, errors="surrogateescape") if "%" in value else value


def _checkEscapes(value: str, what: str) -> None:
    """Every C{%} in C{value} must start a C{%HH} escape."""
    i = value.find("%")
    while i >= 0:
        if len(value) < i + 3 or value[i + 1] not in _HEX or value[i + 2] not in _HEX:
            raise SIPParseError(f"bad escape in {what} {value[:60]!r}")
        i = value.find("%", i + 3)


def _checkChars(value: str, allowed: frozenset[str], what: str) -> None:
    if not allowed.issuperset(value):
        raise SIPParseError(f"bad character in {what} {value[:60]!r}")
    if "%" in value:
        _checkEscapes(value, what)


def isIPv6Reference(host: str) -> bool:
    return host.startswith("[") and host.endswith("]")


def isIPv6Address(text: str) -> bool:
    """True if C{text} (no brackets) is an RFC 4291 textual IPv6 address."""
    if not text or "%" in text or not _HEX.union(":.").issuperset(text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


#: Answers of L{isIPLiteral} (a bounded cache: traffic repeats a few hosts).
_IP_LITERALS: Final[dict[str, bool]] = {}


def isIPLiteral(host: str) -> bool:
    """
    True if C{host} is an IPv4 address or an IPv6 address (with or without
    brackets), False for a name.  Cached: C{ipaddress} costs microseconds
    per call and a proxy asks for every branch.
    """
    known = _IP_LITERALS.get(host)
    if known is not None:
        return known
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in bare:
        answer = isIPv6Address(bare)
    else:
        answer = bool(_IPV4_RE.fullmatch(bare)) and all(int(octet) <= 255 for octet in bare.split("."))
    if len(_IP_LITERALS) >= _VALID_HOSTS_MAX:
        _IP_LITERALS.clear()
    _IP_LITERALS[host] = answer
    return answer


#: Hosts already found valid (carrier traffic repeats a few hosts a lot).
_VALID_HOSTS: Final[dict[str, bool]] = {}
_VALID_HOSTS_MAX: Final = 4096


def validateHost(host: str) -> None:
    """Raise L{SIPParseError} unless C{host} is a hostname, IPv4 or [IPv6]."""
    if host in _VALID_HOSTS:
        return
    _validateHost(host)
    if len(_VALID_HOSTS) >= _VALID_HOSTS_MAX:
        _VALID_HOSTS.clear()
    _VALID_HOSTS[host] = True


def _validateHost(host: str) -> None:
    if not host:
        raise SIPParseError("empty host in URI")
    if host[0] == "[":
        if not (host[-1] == "]" and isIPv6Address(host[1:-1])):
            raise SIPParseError(f"bad IPv6 reference {host[:60]!r}")
        return
    if _IPV4_RE.fullmatch(host):
        if any(int(octet) > 255 for octet in host.split(".")):
            raise SIPParseError(f"bad IPv4 address {host!r}")
        return
    if len(host) > 255 or not _HOSTNAME_RE.fullmatch(host):
        raise SIPParseError(f"bad host {host[:60]!r}")


def isValidHost(host: str) -> bool:
    """True if L{validateHost} accepts C{host}."""
    if host in _VALID_HOSTS:
        return True
    try:
        validateHost(host)
    except SIPParseError:
        return False
    return True


def splitHostPort(text: str) -> tuple[str, Optional[int]]:
    """Split C{host[:port]} (IPv6 references in brackets) and validate both."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SIPParseError(f"unterminated IPv6 reference in {text[:60]!r}")
        host = text[: end + 1]
        rest = text[end + 1:]
        if rest and not rest.startswith(":"):
            raise SIPParseError(f"bad host and port {text[:60]!r}")
        portText = rest[1:] if rest else None
    else:
        host, colon, afterColon = text.partition(":")
        portText = afterColon if colon else None
    validateHost(host)
    port: Optional[int] = None
    if portText is not None:
        if not isDigits(portText) or len(portText) > 5 or int(portText) > 65535:
            raise SIPParseError(f"bad port in {text[:60]!r}")
        port = int(portText)
    return host, port


class URI:
    """
    A parsed URI.

    For C{sip}/C{sips}: C{user}, C{password}, C{host}, C{port}, C{params}
    (lower-cased names, values as written) and C{headers} (the raw text
    after C{?}).  For C{tel}: C{user} holds the number and C{params} its
    parameters.  For any other scheme C{opaque} holds everything after the
    colon and the other fields are empty.
    """

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "opaque")

    def __init__(
        self,
        scheme: str = "sip",
        user: Optional[str] = None,
        host: str = "",
        port: Optional[int] = None,
        params: Optional[dict[str, Optional[str]]] = None,
        headers: Optional[str] = None,
        password: Optional[str] = None,
        opaque: Optional[str] = None,
    ) -> None:
        self.scheme = scheme if scheme == "sip" else scheme.lower()
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = params if params is not None else {}
        self.headers = headers
        self.opaque = opaque

    @classmethod
    def parse(cls, text: str) -> "URI":
        """Parse C{text}; raise L{SIPParseError} if it is not a valid URI."""
        if text[:4] == "sip:":
            return _parseSIP("sip", text[4:])
        if text[:5] == "sips:":
            return _parseSIP("sips", text[5:])
        m = _SCHEME_RE.fullmatch(text)
        if m is None:
            raise SIPParseError(f"malformed URI {text[:60]!r}")
        scheme = m.group(1).lower()
        rest = m.group(2)
        if scheme == "sip" or scheme == "sips":
            return _parseSIP(scheme, rest)
        if not rest or not _OPAQUE_BAD.isdisjoint(rest):
            raise SIPParseError(f"bad character in URI {text[:60]!r}")
        if scheme == "tel":
            number, semi, paramText = rest.partition(";")
            if not number or not _TEL_CHARS.issuperset(number):
                raise SIPParseError(f"bad telephone number in {text[:60]!r}")
            return URI("tel", user=number, params=parseURIParams(paramText) if semi else {})
        return URI(scheme, opaque=rest)

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user}{formatParams(self.params)}"
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":" + self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.params:
            parts.append(formatParams(self.params))
        if self.headers is not None:
            parts.append("?" + self.headers)
        return "".join(parts)

    def __repr__(self) -> str:
        return f"URI({str(self)!r})"

    def copy(self, **changes: object) -> "URI":
        new = URI(
            self.scheme, self.user, self.host, self.port, dict(self.params),
            self.headers, self.password, self.opaque,
        )
        for key, value in changes.items():
            setattr(new, key, value)
        return new

    @property
    def isSIP(self) -> bool:
        return self.scheme in ("sip", "sips")

    @property
    def hostLower(self) -> str:
        return self.host.lower()

    @property
    def transport(self) -> Optional[str]:
        """The lower-cased C{transport} parameter, if any."""
        value = self.params.get("transport")
        return value.lower() if value else None

    def defaultPort(self) -> int:
        return DEFAULT_PORTS.get(self.scheme, 5060)

    def aor(self) -> str:
        """C{user@host} (user unescaped, host lower-cased): the store key."""
        if self.scheme == "tel":
            return (self.user or "").lower()
        if self.user is None:
            return self.host.lower()
        return f"{unescape(self.user)}@{self.host}".lower()

    def unescapedParams(self) -> dict[str, Optional[str]]:
        """The parameters with names and values unescaped (names lower-cased)."""
        return {
            unescape(k).lower(): (unescape(v) if v is not None else None)
            for k, v in self.params.items()
        }

    def param(self, name: str) -> Optional[str]:
        """The unescaped value of parameter C{name} (matched unescaped, any case)."""
        return self.unescapedParams().get(name.lower())

    def equivalent(self, other: "URI") -> bool:
        """URI equality per RFC 3261 §19.1.4."""
        if self.scheme != other.scheme:
            return False
        if self.opaque is not None or other.opaque is not None:
            return self.opaque == other.opaque
        if self.scheme == "tel":
            return _telDigits(self.user) == _telDigits(other.user)
        if unescape(self.user or "") != unescape(other.user or ""):
            return False
        if unescape(self.password or "") != unescape(other.password or ""):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine, theirs = self.unescapedParams(), other.unescapedParams()
        for name in ("user", "ttl", "method", "maddr", "transport"):
            if (name in mine) != (name in theirs):
                return False
        for name, value in mine.items():
            if name in theirs:
                if (value or "").lower() != (theirs[name] or "").lower():
                    return False
        return _headerSet(self.headers) == _headerSet(other.headers)


def _parseSIP(scheme: str, rest: str) -> URI:
    """A C{sip:} or C{sips:} URI from the text after the colon."""
    plain = _plainSIP(scheme, rest)
    if plain is not None:
        return plain
    return _parseSIPGeneral(scheme, rest)


def _parseSIPGeneral(scheme: str, rest: str) -> URI:
    """L{_parseSIP} for any form (the general way)."""
    at = rest.rfind("@")
    user: Optional[str] = None
    password: Optional[str] = None
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1:]
        user, colon, pw = userinfo.partition(":")
        if not user:
            raise SIPParseError("empty user part in URI")
        _checkChars(user, _USER_CHARS, "URI user part")
        if colon:
            _checkChars(pw, _PASSWORD_CHARS, "URI password")
            password = pw
    rest, question, headers = rest.partition("?")
    hostport, semi, paramText = rest.partition(";")
    host, port = splitHostPort(hostport)
    if question:
        _checkChars(headers, _HEADER_CHARS, "URI headers")
    return URI(
        scheme,
        user=user,
        host=host,
        port=port,
        params=parseURIParams(paramText) if semi else {},
        headers=headers if question else None,
        password=password,
    )


def _plainSIP(scheme: str, rest: str) -> Optional[URI]:
    """
    L{_parseSIP} for the common form C{[user@]host[:port][;params]} with
    no escapes, password, IPv6 reference, headers or upper-case parameter
    name; C{None} for anything else (L{_parseSIP} then takes the general way).
    """
    n = len(rest)
    start = 0
    user: Optional[str] = None
    at = rest.rfind("@")
    if at >= 0:
        if at == 0 or scan(rest, 0, _PLAIN_USER_TABLE) != at:
            return None
        user = rest[:at]
        start = at + 1
    i = scan(rest, start, _HOST_TABLE)
    if i == start:
        return None
    host = rest[start:i]
    port: Optional[int] = None
    if i < n and rest[i] == ":":
        portEnd = scan(rest, i + 1, _DIGIT_TABLE)
        if portEnd == i + 1 or portEnd - i > 6 or (portEnd < n and rest[portEnd] != ";"):
            return None
        port = int(rest[i + 1:portEnd])
        if port > 65535:
            return None
        i = portEnd
    params = plainParams(rest, i, _PLAIN_PARAM_NAME_TABLE, _PLAIN_PARAM_TABLE)
    if params is None or not isValidHost(host):
        return None
    return URI(scheme, user=user, host=host, port=port, params=params)


def parseURIParams(text: str) -> dict[str, Optional[str]]:
    """
    Parse URI parameters C{name[=value];...} (the text after the first
    C{;}).  Names are lower-cased and kept escaped as written; a parameter
    without C{=} maps to C{None}.
    """
    params: dict[str, Optional[str]] = {}
    for piece in text.split(";"):
        name, eq, value = piece.partition("=")
        if not name:
            raise SIPParseError(f"empty URI parameter in {text[:60]!r}")
        _checkChars(name, _PARAM_CHARS, "URI parameter")
        if eq:
            if not value:
                raise SIPParseError(f"empty value for URI parameter {name[:40]!r}")
            _checkChars(value, _PARAM_CHARS, "URI parameter")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def _telDigits(number: Optional[str]) -> str:
    return "".join(c for c in (number or "") if c not in "-.()")


def _headerSet(headers: Optional[str]) -> frozenset[tuple[str, str]]:
    if not headers:
        return frozenset()
    items = []
    for item in headers.split("&"):
        name, _, value = item.partition("=")
        items.append((unescape(name).lower(), unescape(value)))
    return frozenset(items)
