"""Where a message came from or goes to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from voipgw.sip.errors import SIPParseError
from voipgw.sip.uri import splitHostPort

TRANSPORTS = ("udp", "tcp", "tls")
RELIABLE = frozenset(["tcp", "tls"])


@dataclass(frozen=True, slots=True)
class Address:
    """
    A transport, host and port.  C{connection} optionally names the stream
    connection (or the UDP protocol) a message arrived on, so the reply can reuse it (RFC 3261
    §18.2.2); it does not take part in equality.
    """

    transport: str
    host: str
    port: int
    connection: Optional[Any] = field(default=None, compare=False, hash=False, repr=False)

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    @property
    def hostForURI(self) -> str:
        """The host as it appears in a URI or Via (IPv6 in brackets)."""
        if ":" in self.host and not self.host.startswith("["):
            return f"[{self.host}]"
        return self.host

    @property
    def bareHost(self) -> str:
        """The host as sockets want it (no brackets)."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def withoutConnection(self) -> "Address":
        return Address(self.transport, self.host, self.port)

    def __str__(self) -> str:
        return f"{self.transport}:{self.hostForURI}:{self.port}"


def parseListen(spec: str) -> Address:
    """
    Parse a listener specification C{udp:HOST:PORT}, C{tcp:HOST:PORT} or
    C{tls:HOST:PORT}; IPv6 hosts are written in brackets
    (C{udp:[::1]:5060}).  Raise C{ValueError} with a clear message.
    """
    transport, sep, rest = spec.strip().partition(":")
    transport = transport.lower()
    if not sep or transport not in TRANSPORTS:
        raise ValueError(f"listener {spec!r}: expected udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT")
    if ":" not in rest:
        raise ValueError(f"listener {spec!r}: missing port")
    if rest.startswith("[") or rest.count(":") == 1:
        try:
            host, port = splitHostPort(rest)
        except SIPParseError as e:
            raise ValueError(f"listener {spec!r}: {e.reason}") from None
    else:
        raise ValueError(f"listener {spec!r}: write IPv6 hosts in brackets, e.g. udp:[::1]:5060")
    if port is None:
        raise ValueError(f"listener {spec!r}: missing port")
    return Address(transport, host[1:-1] if host.startswith("[") else host, port)
