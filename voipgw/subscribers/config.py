# -*- test-case-name: tests.test_subscribers_service -*-
"""The C{[subscribers]} config section, validated."""

from __future__ import annotations

from voipgw.errors import ConfigError  # noqa: F401 - re-exported
import math
from dataclasses import dataclass, field
from typing import Mapping

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_URL = "sqlite:///data/subscribers.sqlite"

SUPPORTED_BACKENDS = ("sqlite", "mysql")


def validateURL(url: str, what: str = "database URL") -> str:
    """Return C{url} if SQLAlchemy can parse it and voipgw supports its backend."""
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError) as e:
        raise ConfigError(f"invalid {what} {url!r}: {e}") from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise ConfigError(
            f"unsupported {what} {parsed.render_as_string(hide_password=True)!r}: "
            "use sqlite:///PATH or mysql+mysqldb://USER:PASSWORD@HOST/DATABASE"
        )
    if backend == "mysql" and not parsed.database:
        raise ConfigError(f"{what} {parsed.render_as_string(hide_password=True)!r} names no database")
    return url.strip()


def _number(section: str, key: str, raw: str, minimum: float, integer: bool = False) -> float:
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"[{section}] {key} must be {kind}, not {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"[{section}] {key} must be at least {minimum:g}, not {raw!r}")
    return value


def _boolean(section: str, key: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("yes", "true", "on", "1"):
        return True
    if value in ("no", "false", "off", "0", ""):
        return False
    raise ConfigError(f"[{section}] {key} must be yes or no, not {raw!r}")


@dataclass(frozen=True)
class SubscriberConfig:
    """
    The C{[subscribers]} section.

    @ivar master: URL all writes go to (default: embedded SQLite).
    @ivar replicas: URLs of replicas reads are spread over.
    @ivar cacheTTL: seconds a found subscriber stays cached (C{cache_ttl}).
    @ivar negativeCacheTTL: seconds an unknown one stays cached
        (C{negative_cache_ttl}; default the smaller of 2 and C{cacheTTL}).
    @ivar cacheSize: cached lookups kept at most (C{cache_size}).
    @ivar maxReplicaLag: seconds of lag that take a replica out (C{max_replica_lag}).
    @ivar probeInterval: seconds between replica checks (C{probe_interval}).
    @ivar preload: fill the cache with up to C{cache_size} subscribers at
        start (C{preload}, default no; useful with a long C{cache_ttl}: the
        first REGISTER of each device then needs no database read).
    """

    master: str = DEFAULT_URL
    replicas: tuple[str, ...] = field(default_factory=tuple)
    cacheTTL: float = 10.0
    negativeCacheTTL: float = 2.0
    cacheSize: int = 100_000
    maxReplicaLag: float = 5.0
    probeInterval: float = 5.0
    preload: bool = False

    KEYS = (
        "master",
        "replicas",
        "cache_ttl",
        "negative_cache_ttl",
        "cache_size",
        "max_replica_lag",
        "probe_interval",
        "preload",
    )

    @classmethod
    def fromSection(cls, section: Mapping[str, str], name: str = "subscribers") -> "SubscriberConfig":
        """Validate a parsed INI section; raise L{ConfigError} on a bad value."""
        unknown = sorted(set(section) - set(cls.KEYS))
        if unknown:
            raise ConfigError(
                f"[{name}] unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                f"(known: {', '.join(cls.KEYS)})"
            )
        master = section.get("master", "").strip() or DEFAULT_URL
        master = validateURL(master, f"[{name}] master URL")
        replicas = tuple(
            validateURL(u, f"[{name}] replica URL")
            for u in (part.strip() for part in section.get("replicas", "").split(","))
            if u
        )
        if replicas and make_url(master).get_backend_name() != "mysql":
            raise ConfigError(f"[{name}] replicas need a MySQL/MariaDB master, not {master!r}")
        if len(set(replicas)) != len(replicas) or master in replicas:
            raise ConfigError(f"[{name}] the same database is listed twice in master/replicas")
        cacheTTL = _number(name, "cache_ttl", section.get("cache_ttl", "10"), 0)
        negative = section.get("negative_cache_ttl")
        negativeTTL = (
            _number(name, "negative_cache_ttl", negative, 0) if negative is not None else min(2.0, cacheTTL)
        )
        return cls(
            master=master,
            replicas=replicas,
            cacheTTL=cacheTTL,
            negativeCacheTTL=negativeTTL,
            cacheSize=int(_number(name, "cache_size", section.get("cache_size", "100000"), 1, integer=True)),
            maxReplicaLag=_number(name, "max_replica_lag", section.get("max_replica_lag", "5"), 0),
            probeInterval=_number(name, "probe_interval", section.get("probe_interval", "5"), 0.1),
            preload=_boolean(name, "preload", section.get("preload", "no")),
        )
