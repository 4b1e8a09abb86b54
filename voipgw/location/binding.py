# -*- test-case-name: tests.test_location_memory -*-
"""The contact binding: one reachable device of an address-of-record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any


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


def _fastInit(cls: Any) -> None:
    """
    Give the frozen, slotted dataclass C{cls} an C{__init__} that stores the
    fields through their slot descriptors directly.

    The one C{dataclass(frozen=True)} generates calls
    C{object.__setattr__(self, name, value)} per field (a global, an
    attribute and a generic call each: about 1.4 us for the 15 fields of
    L{Binding}); calling each slot's C{__set__} takes half that.  Every
    REGISTER builds a binding, and every worker builds it again when the
    change is replicated to it.  Same signature, defaults and annotations;
    instances stay immutable (C{__setattr__} is untouched).
    """
    fields = dataclasses.fields(cls)
    namespace: dict[str, Any] = {}
    params = []
    for f in fields:
        if f.default_factory is not dataclasses.MISSING or f.init is False:  # pragma: no cover
            return  # not the shape this handles: keep the generated one
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
    body = "".join(f"    _set_{f.name}(self, {f.name})\n" for f in fields)
    exec(f"def __init__(self, {', '.join(params)}):\n{body}", namespace)
    init = namespace["__init__"]
    generated = cls.__init__
    init.__qualname__ = generated.__qualname__
    init.__module__ = cls.__module__
    init.__annotations__ = dict(generated.__annotations__)
    init.__doc__ = generated.__doc__
    cls.__init__ = init


_fastInit(Binding)
