"""The subscriber record and the digest HA1 helpers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


def computeHA1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """
    Return the digest HA1 (RFC 7616 §3.4.2) as lower-case hex.

    C{algorithm} is C{"MD5"} or C{"SHA-256"}. Only HA1 is ever stored; the
    plain password is not.
    """
    data = f"{username}:{realm}:{password}".encode("utf-8")
    if algorithm.upper() == "MD5":
        return hashlib.md5(data).hexdigest()
    if algorithm.upper() == "SHA-256":
        return hashlib.sha256(data).hexdigest()
    raise ValueError(f"unsupported digest algorithm {algorithm!r}")


@dataclass(frozen=True)
class Subscriber:
    """
    A provisioned subscriber: credentials and per-subscriber settings.

    C{ha1} is the MD5 HA1 and C{ha1Sha256} the SHA-256 HA1, both computed
    with the realm equal to C{domain}.
    """

    username: str
    domain: str
    ha1: str
    ha1Sha256: str
    enabled: bool = True
    callerId: str = ""
    maxContacts: int = 0
    attributes: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def aor(self) -> str:
        return f"{self.username}@{self.domain}"
