# -*- test-case-name: tests.test_sip_grammar -*-
"""
Small lexical helpers shared by the header parsers (RFC 3261 §25).

These work on already unfolded header values.  Splitting respects quoted
strings (with backslash escapes) and angle brackets, so a comma or
semicolon inside C{"..."} or C{<...>} never splits.
"""

from __future__ import annotations

import re

TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
WSP = " \t"


def isToken(value: str) -> bool:
    """True if C{value} is a non-empty RFC 3261 token."""
    return bool(_TOKEN_RE.match(value))


def splitOutside(value: str, separator: str) -> list[str]:
    """
    Split C{value} on C{separator} where it is outside quotes and <>.

    The pieces are returned unstripped; an unterminated quote or bracket
    swallows the rest of the value into the last piece.
    """
    if '"' not in value and "<" not in value:
        return value.split(separator)
    pieces = []
    start = 0
    inQuote = False
    inAngle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if inQuote:
            if c == "\\":
                i += 1
            elif c == '"':
                inQuote = False
        elif c == '"':
            inQuote = True
        elif c == "<":
            inAngle = True
        elif c == ">":
            inAngle = False
        elif c == separator and not inAngle:
            pieces.append(value[start:i])
            start = i + 1
        i += 1
    pieces.append(value[start:])
    return pieces


def splitCommas(value: str) -> list[str]:
    """The comma-separated elements of a header value, stripped, empties dropped."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    return [p.strip() for p in splitOutside(value, ",") if p.strip()]


def parseParams(text: str) -> dict[str, str | None]:
    """
    Parse C{;name=value;flag} generic parameters (leading C{;} optional).

    Names are lower-cased; a flag without C{=} maps to C{None}; quoted values
    keep their quotes (so they serialise back unchanged).  Whitespace around
    C{;} and C{=} is allowed (RFC 3261 §25.1 SEMI and EQUAL include LWS).
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    for piece in splitOutside(text, ";"):
        piece = piece.strip(WSP)
        if not piece:
            continue
        name, eq, val = piece.partition("=")
        name = name.strip(WSP).lower()
        if not name:
            raise ValueError(f"empty parameter name in {text!r}")
        params[name] = val.strip(WSP) if eq else None
    return params


def formatParams(params: dict[str, str | None]) -> str:
    """Serialise parameters as C{;name=value;flag}."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def unquote(value: str) -> str:
    """Remove the quotes of a quoted-string and resolve its backslash escapes."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if "\\" not in inner:
            return inner
        out = []
        i = 0
        while i < len(inner):
            c = inner[i]
            if c == "\\" and i + 1 < len(inner):
                i += 1
                c = inner[i]
            out.append(c)
            i += 1
        return "".join(out)
    return value


def quote(value: str) -> str:
    """Make a quoted-string of C{value}."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
