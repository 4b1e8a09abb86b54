# -*- test-case-name: tests.test_sip_uri -*-
"""
SIP, SIPS and TEL URIs (RFC 3261 §19.1, RFC 3966), and opaque URIs of any
other scheme (so a message carrying one can be answered C{416}).
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import unquote as _percentUnquote

from voipgw.sip.errors import SIPParseError
from voipgw.sip.grammar import formatParams, parseParams

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+\-.]*):(.*)$", re.S)
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?\.?$|^[A-Za-z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f:.]+$")
_USER_BAD = frozenset(" \t\r\n<>\"@")

DEFAULT_PORTS = {"sip": 5060, "sips": 5061}


def unescape(value: str) -> str:
    """Resolve C{%XX} escapes (RFC 3261 §19.1.4 compares unescaped)."""
    return _percentUnquote(value, errors="surrogateescape") if "%" in value else value


def isIPv6Reference(host: str) -> bool:
    return host.startswith("[") and host.endswith("]")


def validateHost(host: str) -> None:
    """Raise L{SIPParseError} unless C{host} is a hostname, IPv4 or [IPv6]."""
    if not host:
        raise SIPParseError("empty host in URI")
    if host[0] == "[":
        inner = host[1:-1] if host.endswith("]") else ""
        if not inner or not _IPV6_RE.match(inner) or "::" in inner.replace("::", "", 1):
            raise SIPParseError(f"bad IPv6 reference {host!r}")
        # At most 8 groups, and a compressed form must not be complete.
        groups = inner.split(":")
        if len(groups) > 8 + ("." in inner):
            raise SIPParseError(f"bad IPv6 reference {host!r}")
        if "::" not in inner and not ("." in groups[-1] and len(groups) == 7) and len(groups) != 8:
            raise SIPParseError(f"bad IPv6 reference {host!r}")
        return
    if _IPV4_RE.match(host):
        if any(int(octet) > 255 for octet in host.split(".")):
            raise SIPParseError(f"bad IPv4 address {host!r}")
        return
    if not _HOSTNAME_RE.match(host):
        raise SIPParseError(f"bad host {host!r}")


def splitHostPort(text: str) -> tuple[str, Optional[int]]:
    """Split C{host[:port]} (IPv6 references in brackets) and validate both."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SIPParseError(f"unterminated IPv6 reference in {text!r}")
        host = text[: end + 1]
        rest = text[end + 1:]
        if rest and not rest.startswith(":"):
            raise SIPParseError(f"bad host and port {text!r}")
        portText = rest[1:] if rest else None
    else:
        host, colon, portText = text.partition(":")
        if not colon:
            portText = None
    validateHost(host)
    port: Optional[int] = None
    if portText is not None:
        if not portText.isdigit() or len(portText) > 5 or int(portText) > 65535:
            raise SIPParseError(f"bad port in {text!r}")
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
        self.scheme = scheme.lower()
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
        m = _SCHEME_RE.match(text)
        if m is None:
            raise SIPParseError(f"malformed URI {text!r}")
        scheme = m.group(1).lower()
        rest = m.group(2)
        if any(c in rest for c in " \t\r\n"):
            raise SIPParseError(f"whitespace in URI {text!r}")
        if scheme in ("sip", "sips"):
            return cls._parseSIP(scheme, rest)
        if scheme == "tel":
            number, _, paramText = rest.partition(";")
            if not number:
                raise SIPParseError(f"empty telephone number in {text!r}")
            return cls("tel", user=number, params=_params(paramText))
        return cls(scheme, opaque=rest)

    @classmethod
    def _parseSIP(cls, scheme: str, rest: str) -> "URI":
        at = rest.rfind("@")
        user: Optional[str] = None
        password: Optional[str] = None
        if at >= 0:
            userinfo = rest[:at]
            rest = rest[at + 1:]
            if not userinfo:
                raise SIPParseError("empty user part in URI")
            if _USER_BAD.intersection(userinfo):
                raise SIPParseError(f"bad character in URI user part {userinfo!r}")
            user, colon, pw = userinfo.partition(":")
            if colon:
                password = pw
            if not user:
                raise SIPParseError("empty user part in URI")
        rest, question, headers = rest.partition("?")
        hostport, _, paramText = rest.partition(";")
        host, port = splitHostPort(hostport)
        return cls(
            scheme,
            user=user,
            host=host,
            port=port,
            params=_params(paramText),
            headers=headers if question else None,
            password=password,
        )

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
        for name in ("user", "ttl", "method", "maddr", "transport"):
            a, b = self.params.get(name), other.params.get(name)
            if (a is None) != (b is None):
                return False
            if a is not None and b is not None and unescape(a).lower() != unescape(b).lower():
                return False
        for name, value in self.params.items():
            if name in other.params:
                theirs = other.params[name]
                if (value or "").lower() != (theirs or "").lower():
                    return False
        return _headerSet(self.headers) == _headerSet(other.headers)


def _params(text: str) -> dict[str, Optional[str]]:
    try:
        return parseParams(text)
    except ValueError as e:
        raise SIPParseError(str(e)) from None


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
