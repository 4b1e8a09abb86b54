# -*- test-case-name: tests.test_registrar -*-
"""
The C{[registrar]} configuration section::

    [registrar]
    min_expires = 60              ; shorter non-zero requests get 423 + Min-Expires
    max_expires = 3600            ; longer requests are granted this
    default_expires = 3600        ; when neither Contact expires nor Expires is given
                                  ; (unset: 3600 clamped to min_expires..max_expires)
    max_contacts = 0              ; per AOR, 0 = unlimited (a subscriber's maxContacts overrides)
    max_contacts_policy = replace-oldest   ; or reject (403)
    max_contacts_per_request = 32 ; more Contacts in one REGISTER -> 403, nothing stored
    expires_jitter_percent = 0    ; grant up to this % less than asked (spreads re-registrations)
    realm_policy = aor-domain     ; realm = the To domain; or request-uri (= Request-URI host)
    username_must_match = yes     ; the digest username must be the AOR user
    retry_after = 5               ; Retry-After of 503 when a store is unavailable
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from voipgw.errors import ConfigError

__all__ = ["RegistrarConfig", "POLICIES", "REALM_POLICIES"]

POLICIES = ("replace-oldest", "reject")
REALM_POLICIES = ("aor-domain", "request-uri")

_KNOWN = frozenset({
    "min_expires", "max_expires", "default_expires", "max_contacts", "max_contacts_policy",
    "max_contacts_per_request", "expires_jitter_percent", "realm_policy", "username_must_match",
    "retry_after",
})

#: delta-seconds larger than this are malformed (RFC 3261 §20.19: 2**32-1).
MAX_DELTA_SECONDS = 2**32 - 1


def _int(section: Mapping[str, str], key: str, default: int, minimum: int, maximum: int) -> int:
    raw = section.get(key)
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    if not text.isdigit():
        raise ConfigError(f"[registrar] {key}: expected a whole number, got {raw!r}")
    value = int(text)
    if not minimum <= value <= maximum:
        raise ConfigError(f"[registrar] {key}: {value} is outside {minimum}..{maximum}")
    return value


def _bool(section: Mapping[str, str], key: str, default: bool) -> bool:
    raw = section.get(key)
    if raw is None or not raw.strip():
        return default
    text = raw.strip().lower()
    if text in ("1", "yes", "true", "on"):
        return True
    if text in ("0", "no", "false", "off"):
        return False
    raise ConfigError(f"[registrar] {key}: expected yes or no, got {raw!r}")


def _choice(section: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    raw = section.get(key)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"[registrar] {key}: expected one of {', '.join(choices)}, got {raw!r}")
    return value


@dataclass(frozen=True)
class RegistrarConfig:
    """The validated C{[registrar]} section (see the module docstring)."""

    minExpires: int = 60
    maxExpires: int = 3600
    defaultExpires: int = 3600
    maxContacts: int = 0
    maxContactsPolicy: str = "replace-oldest"
    maxContactsPerRequest: int = 32
    expiresJitterPercent: int = 0
    realmPolicy: str = "aor-domain"
    usernameMustMatch: bool = True
    retryAfter: int = 5

    def __post_init__(self) -> None:
        if self.minExpires < 1:
            raise ConfigError("[registrar] min_expires: must be at least 1")
        if self.maxExpires < self.minExpires:
            raise ConfigError(
                f"[registrar] max_expires ({self.maxExpires}) is below min_expires ({self.minExpires})"
            )
        if not self.minExpires <= self.defaultExpires <= self.maxExpires:
            raise ConfigError(
                f"[registrar] default_expires ({self.defaultExpires}) must lie within "
                f"min_expires..max_expires ({self.minExpires}..{self.maxExpires})"
            )
        if self.maxContactsPolicy not in POLICIES:
            raise ConfigError(f"[registrar] max_contacts_policy: expected one of {', '.join(POLICIES)}")
        if self.realmPolicy not in REALM_POLICIES:
            raise ConfigError(f"[registrar] realm_policy: expected one of {', '.join(REALM_POLICIES)}")
        if not 0 <= self.expiresJitterPercent <= 50:
            raise ConfigError("[registrar] expires_jitter_percent: must be within 0..50")
        if self.maxContactsPerRequest < 1:
            raise ConfigError("[registrar] max_contacts_per_request: must be at least 1")

    @classmethod
    def fromSection(cls, section: Mapping[str, str]) -> "RegistrarConfig":
        """Parse and validate; raise L{ConfigError} saying what is wrong."""
        section = {k.lower(): v for k, v in section.items()}
        for key in section:
            if key not in _KNOWN:
                raise ConfigError(
                    f"[registrar] unknown option {key!r} (known: {', '.join(sorted(_KNOWN))})"
                )
        minExpires = _int(section, "min_expires", 60, 1, MAX_DELTA_SECONDS)
        maxExpires = _int(section, "max_expires", 3600, 1, MAX_DELTA_SECONDS)
        # Unset, default_expires follows the bounds (3600 clamped to them).
        fallback = min(max(3600, minExpires), maxExpires)
        return cls(
            minExpires=minExpires,
            maxExpires=maxExpires,
            defaultExpires=_int(section, "default_expires", fallback, 1, MAX_DELTA_SECONDS),
            maxContacts=_int(section, "max_contacts", 0, 0, 100_000),
            maxContactsPolicy=_choice(section, "max_contacts_policy", "replace-oldest", POLICIES),
            maxContactsPerRequest=_int(section, "max_contacts_per_request", 32, 1, 10_000),
            expiresJitterPercent=_int(section, "expires_jitter_percent", 0, 0, 50),
            realmPolicy=_choice(section, "realm_policy", "aor-domain", REALM_POLICIES),
            usernameMustMatch=_bool(section, "username_must_match", True),
            retryAfter=_int(section, "retry_after", 5, 1, 3600),
        )
