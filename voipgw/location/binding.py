# -*- test-case-name: tests.test_location_memory -*-
"""The contact binding: one reachable device of an address-of-record."""

from __future__ import annotations

from dataclasses import dataclass, replace


def normaliseAOR(aor: str) -> str:
    """
    Return the canonical form of an address-of-record used as a store key.

    C{sip:Alice@Example.COM;transport=udp} and C{alice@example.com} both
    become C{alice@example.com}: the scheme and URI parameters are dropped,
    the host is lower-cased and the user part is lower-cased too (carrier
    subscriber names are case-insensitive).
    """
    value = aor.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    for scheme in ("sips:", "sip:", "tel:"):
        if value[: len(scheme)].lower() == scheme:
            value = value[len(scheme):]
            break
    value = value.split(";", 1)[0].split("?", 1)[0]
    return value.lower()


@dataclass(frozen=True, slots=True)
class Binding:
    """
    One contact registered for an address-of-record (RFC 3261 §10).

    Times are absolute seconds on the registrar's clock (C{IReactorTime}).
    A binding is identified within its AOR by L{key}: the RFC 5626
    instance-id and reg-id when the device sent them, otherwise the contact
    URI itself.
    """

    aor: str
    contact: str
    expires: float
    q: float = 1.0
    callId: str = ""
    cseq: int = 0
    path: tuple[str, ...] = ()
    received: str = ""
    instanceId: str = ""
    regId: int = 0
    userAgent: str = ""
    socket: str = ""
    updated: float = 0.0
    flags: int = 0
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """The identity of this binding within its AOR."""
        if self.instanceId:
            return f"{self.instanceId};reg-id={self.regId}"
        return self.contact

    def remaining(self, now: float) -> int:
        """Whole seconds until this binding expires (never negative)."""
        return max(0, int(self.expires - now + 0.5))

    def isExpired(self, now: float) -> bool:
        return self.expires <= now

    def evolve(self, **changes: object) -> "Binding":
        """Return a copy with C{changes} applied."""
        return replace(self, **changes)  # type: ignore[arg-type]
