# -*- test-case-name: tests.test_auth_digest -*-
"""
The C{[auth]} configuration section::

    [auth]
    secret = a-site-wide-secret-of-16-bytes-or-more   ; same on every node of a site
    nonce_lifetime = 300       ; seconds a nonce stays fresh
    algorithms = SHA-256, MD5  ; challenges offered, in this order
    max_failures = 5           ; failed attempts per user and source host ...
    failure_window = 60        ; ... within this many seconds before 403 (0 = off)

There is no default secret.  Without C{secret}, L{AuthConfig.resolveSecret}
uses the secret stored in the node's data directory (C{auth-secret}),
generating a random one the first time (a single embedded node needs no
configuration; every node of a multi-node site must be given the same
C{secret}).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from twisted.logger import Logger

from voipgw.auth.digest import SUPPORTED_ALGORITHMS, DigestAuthenticator
from voipgw.errors import ConfigError

__all__ = ["AuthConfig", "SECRET_FILE", "loadOrCreateSecret"]

_KNOWN = frozenset({"secret", "nonce_lifetime", "algorithms", "max_failures", "failure_window"})

#: Name of the generated secret in the node's data directory.
SECRET_FILE = "auth-secret"
MIN_SECRET = 16

log = Logger(namespace="voipgw.auth.config")


def _number(section: Mapping[str, str], key: str, default: float, minimum: float, maximum: float) -> float:
    raw = section.get(key)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"[auth] {key}: expected a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"[auth] {key}: {raw.strip()} is outside {minimum:g}..{maximum:g}")
    return value


@dataclass(frozen=True)
class AuthConfig:
    """The validated C{[auth]} section (see the module docstring)."""

    secret: Optional[bytes] = None
    nonceLifetime: float = 300.0
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    maxFailures: int = 5
    failureWindow: float = 60.0

    @classmethod
    def fromSection(cls, section: Mapping[str, str]) -> "AuthConfig":
        """Parse and validate; raise L{ConfigError} saying what is wrong."""
        section = {k.lower(): v for k, v in section.items()}
        for key in section:
            if key not in _KNOWN:
                raise ConfigError(f"[auth] unknown option {key!r} (known: {', '.join(sorted(_KNOWN))})")
        secret: Optional[bytes] = None
        if "secret" in section:
            text = section["secret"].strip()
            secret = text.encode("utf-8")
            if len(secret) < MIN_SECRET:
                raise ConfigError(
                    f"[auth] secret: must be at least {MIN_SECRET} bytes (got {len(secret)}); "
                    "use a long random string, the same on every node of the site"
                )
        algorithms: list[str] = []
        for item in section.get("algorithms", "SHA-256, MD5").replace("\n", ",").split(","):
            name = item.strip().upper()
            if not name:
                continue
            if name not in SUPPORTED_ALGORITHMS:
                raise ConfigError(
                    f"[auth] algorithms: unsupported algorithm {item.strip()!r} "
                    f"(supported: {', '.join(SUPPORTED_ALGORITHMS)})"
                )
            if name in algorithms:
                raise ConfigError(f"[auth] algorithms: {name} listed twice")
            algorithms.append(name)
        if not algorithms:
            raise ConfigError("[auth] algorithms: at least one of SHA-256, MD5 is needed")
        return cls(
            secret=secret,
            nonceLifetime=_number(section, "nonce_lifetime", 300.0, 5.0, 86400.0),
            algorithms=tuple(algorithms),
            maxFailures=int(_number(section, "max_failures", 5, 0, 1_000_000)),
            failureWindow=_number(section, "failure_window", 60.0, 1.0, 86400.0),
        )

    def resolveSecret(self, dataDir: str) -> bytes:
        """The configured secret, or the one stored in (or created in) C{dataDir}."""
        if self.secret is not None:
            return self.secret
        return loadOrCreateSecret(dataDir)

    def buildAuthenticator(self, subscribers: Any, clock: Any, dataDir: str) -> DigestAuthenticator:
        """A L{DigestAuthenticator} for C{subscribers} with these settings."""
        return DigestAuthenticator(
            subscribers,
            self.resolveSecret(dataDir),
            clock,
            nonceLifetime=self.nonceLifetime,
            algorithms=self.algorithms,
            maxFailures=self.maxFailures,
            failureWindow=self.failureWindow,
        )


def loadOrCreateSecret(dataDir: str) -> bytes:
    """
    Read C{dataDir/auth-secret}, or create it with 32 random bytes (hex)
    readable only by the owner.  Called once at startup, before the reactor
    runs.  Raises L{ConfigError} if the file is unusable.
    """
    path = os.path.join(dataDir, SECRET_FILE)
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
    except FileNotFoundError:
        os.makedirs(dataDir, exist_ok=True)
        secret = secrets.token_hex(32).encode("ascii")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process of this node won the race
            return loadOrCreateSecret(dataDir)
        except OSError as e:
            raise ConfigError(f"[auth] cannot create the nonce secret {path}: {e.strerror}") from None
        with os.fdopen(fd, "wb") as f:
            f.write(secret + b"\n")
        log.info(
            "No [auth] secret configured: generated a random nonce secret in {path}. "
            "Nodes of a multi-node site need the same [auth] secret.",
            path=path,
        )
        return secret
    except OSError as e:
        raise ConfigError(f"[auth] cannot read the nonce secret {path}: {e.strerror}") from None
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"[auth] the nonce secret in {path} is shorter than {MIN_SECRET} bytes")
    return secret
