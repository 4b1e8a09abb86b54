# -*- test-case-name: tests.test_sip_grammar -*-
"""
Small lexical helpers shared by the header parsers (RFC 3261 §25).

These work on already unfolded header values.  Splitting respects quoted
strings (with backslash escapes) and angle brackets, so a comma or
semicolon inside C{"..."} or C{<...>} never splits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Optional

if TYPE_CHECKING:
    # mypyc compiles i64 to a machine integer; at run time (annotations are
    # not evaluated) it is never looked up, so mypy_extensions is not needed.
    from mypy_extensions import i64

TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
#: Characters of a generic-param value that is a token or a host
#: (C{gen-value = token / host / quoted-string}; a host may be an [IPv6]).
_GEN_VALUE_CHARS: Final = TOKEN_CHARS | frozenset("[]:")
_DIGITS: Final = frozenset("0123456789")
WSP: Final = " \t"


def charTable(chars: frozenset[str]) -> bytes:
    """A 128-byte table for L{scan}: 1 for the ASCII characters in C{chars}."""
    return bytes(1 if chr(code) in chars else 0 for code in range(128))


def scan(text: str, start: i64, table: bytes) -> i64:
    """Index of the first character from C{start} on not in C{table} (or the end)."""
    n: i64 = len(text)
    i = start
    while i < n:
        code: i64 = ord(text[i])
        if code >= 128 or table[code] == 0:
            return i
        i += 1
    return i


_TOKEN_TABLE: Final = charTable(TOKEN_CHARS)
_DIGIT_TABLE: Final = charTable(_DIGITS)
#: Token characters except upper-case letters: a parameter name that needs
#: no lower-casing.
_LOWER_TOKEN_TABLE: Final = charTable(TOKEN_CHARS - frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_GEN_VALUE_TABLE: Final = charTable(_GEN_VALUE_CHARS)


def isToken(value: str) -> bool:
    """True if C{value} is a non-empty RFC 3261 token."""
    return len(value) > 0 and scan(value, 0, _TOKEN_TABLE) == len(value)


def isDigits(value: str) -> bool:
    """True if C{value} is a non-empty run of ASCII digits (C{1*DIGIT})."""
    return len(value) > 0 and scan(value, 0, _DIGIT_TABLE) == len(value)


def quotedEnd(value: str, start: int) -> int:
    """
    Index just past the quoted-string opening at C{value[start]} (a C{"}),
    or -1 if it is not terminated.  Backslash escapes one character.
    """
    i = start + 1
    n = len(value)
    while i < n:
        c = value[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    return -1


def isQuotedString(value: str) -> bool:
    """True if the whole of C{value} is one quoted-string."""
    return bool(value) and value[0] == '"' and quotedEnd(value, 0) == len(value)


def splitOutside(value: str, separator: str) -> list[str]:
    """
    Split C{value} on C{separator} where it is outside quotes and <>.

    The pieces are returned unstripped; an unterminated quote or bracket
    swallows the rest of the value into the last piece.
    """
    if '"' not in value:
        if "<" not in value:
            return value.split(separator)
        return _splitOutsideAngles(value, separator)
    pieces = []
    start = 0
    inAngle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == '"' and not inAngle:
            end = quotedEnd(value, i)
            if end < 0:
                break
            i = end
            continue
        if c == "<":
            inAngle = True
        elif c == ">":
            inAngle = False
        elif c == separator and not inAngle:
            pieces.append(value[start:i])
            start = i + 1
        i += 1
    pieces.append(value[start:])
    return pieces


def _splitOutsideAngles(value: str, separator: str) -> list[str]:
    """L{splitOutside} for a value without quotes: skip separators inside <>."""
    pieces = []
    start = pos = 0
    find = value.find
    while True:
        i = find(separator, pos)
        if i < 0:
            break
        lt = value.rfind("<", start, i)
        if lt >= 0 and find(">", lt, i) < 0:
            gt = find(">", i)
            if gt < 0:
                break
            pos = gt + 1
            continue
        pieces.append(value[start:i])
        start = pos = i + 1
    pieces.append(value[start:])
    return pieces


def splitCommas(value: str) -> list[str]:
    """The comma-separated elements of a header value, stripped, empties dropped."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    return [p.strip() for p in splitOutside(value, ",") if p.strip()]


def plainParams(
    text: str, start: int, nameTable: bytes = _LOWER_TOKEN_TABLE, valueTable: bytes = _GEN_VALUE_TABLE
) -> Optional[dict[str, Optional[str]]]:
    """
    The parameters in C{text[start:]} when they are in the plain form
    C{;name=value;flag} (C{text[start]} is C{;}, or C{start} is the end),
    every name made of C{nameTable} characters and every value of
    C{valueTable} ones.  C{None} for anything else (an empty name or value,
    whitespace, quotes, ...), so that the general parser decides.

    With the default tables (lower-case token names, token or host values)
    the result is the one L{parseParams} gives.
    """
    params: dict[str, Optional[str]] = {}
    n = len(text)
    i = start
    while i < n:
        if text[i] != ";":
            return None
        nameEnd = scan(text, i + 1, nameTable)
        if nameEnd == i + 1:
            return None
        name = text[i + 1:nameEnd]
        if nameEnd == n or text[nameEnd] == ";":
            params[name] = None
            i = nameEnd
            continue
        if text[nameEnd] != "=":
            return None
        valueEnd = scan(text, nameEnd + 1, valueTable)
        if valueEnd == nameEnd + 1 or (valueEnd < n and text[valueEnd] != ";"):
            return None
        params[name] = text[nameEnd + 1:valueEnd]
        i = valueEnd
    return params


def parseParams(text: str) -> dict[str, str | None]:
    """
    Parse C{;name=value;flag} generic parameters (leading C{;} optional).

    Names are lower-cased; a flag without C{=} maps to C{None}; quoted values
    keep their quotes (so they serialise back unchanged).  Whitespace around
    C{;} and C{=} is allowed (RFC 3261 §25.1 SEMI and EQUAL include LWS).
    Raises C{ValueError} for an empty parameter (C{;;}), a name that is not
    a token or a value that is neither a token, a host nor a quoted-string.
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    text = text.lstrip(WSP)
    if text[:1] == ";":
        text = text[1:]
    pieces = splitOutside(text, ";") if '"' in text else text.split(";")
    for piece in pieces:
        name, eq, val = piece.partition("=")
        name = name.strip(WSP)
        if not name:
            raise ValueError(f"empty parameter in {text[:60]!r}")
        if not TOKEN_CHARS.issuperset(name):
            raise ValueError(f"bad parameter name {name[:40]!r}")
        if eq:
            val = val.strip(WSP)
            if not val:
                raise ValueError(f"empty value for parameter {name[:40]!r}")
            if val[0] == '"':
                if quotedEnd(val, 0) != len(val):
                    raise ValueError(f"bad quoted value for parameter {name[:40]!r}")
            elif not _GEN_VALUE_CHARS.issuperset(val):
                raise ValueError(f"bad value for parameter {name[:40]!r}")
            params[name.lower()] = val
        else:
            params[name.lower()] = None
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
