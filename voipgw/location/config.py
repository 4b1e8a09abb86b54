# -*- test-case-name: tests.test_location_config -*-
"""
The C{[location]} configuration section.

::

    [location]
    backend = partitioned          ; or memory (the default)
    map = mysql+mysqldb://voipgw:secret@mapdb.example.net/voipgw_map
    ; -- or, for a single node, the map inline:
    ; partitions = 2
    ; partition.0 = mysql+mysqldb://u:p@db1/loc, mysql+mysqldb://u:p@db2/loc
    ; partition.1 = mysql+mysqldb://u:p@db3/loc, mysql+mysqldb://u:p@db4/loc
    ; spares = mysql+mysqldb://u:p@db5/loc
    ; risk_group.rackA = mysql+mysqldb://u:p@db1/loc, mysql+mysqldb://u:p@db3/loc
    ; risk_group.rackB = mysql+mysqldb://u:p@db2/loc, mysql+mysqldb://u:p@db4/loc
    health_interval = 5
    error_threshold = 3
    reload_interval = 10
    spare_after = 30
    expire_interval = 60
    connect_timeout = 2
    write_mode = write-through
    node_id = node1.example.net

Risk groups are declared as C{risk_group.NAME = URL, URL} because an INI key
cannot hold a URL (C{:} is a key delimiter); a database in no declared group
is in the group named after its host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from sqlalchemy.engine import make_url

from voipgw.location.errors import ConfigError
from voipgw.location.partitioning import MapError, PartitionMap, buildMap

_KNOWN = {
    "backend", "map", "partitions", "spares", "health_interval", "error_threshold",
    "reload_interval", "spare_after", "expire_interval", "connect_timeout", "write_mode",
    "node_id",
}


def _checkURL(url: str, what: str) -> str:
    try:
        u = make_url(url)
    except Exception:
        raise ConfigError(f"[location] {what}: bad database URL {url!r}") from None
    if u.get_backend_name() not in ("mysql", "mariadb"):
        raise ConfigError(
            f"[location] {what}: {url!r} is not a MySQL/MariaDB URL "
            "(mysql+mysqldb://user:password@host:port/database)"
        )
    if not u.database:
        raise ConfigError(f"[location] {what}: {url!r} names no database")
    if not u.host and not u.query.get("unix_socket"):
        raise ConfigError(f"[location] {what}: {url!r} names no host")
    return url


def _urls(value: str, what: str) -> tuple[str, ...]:
    return tuple(_checkURL(v.strip(), what) for v in value.split(",") if v.strip())


def _number(section: Mapping[str, str], key: str, default: float, minimum: float) -> float:
    raw = section.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"[location] {key} must be a number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"[location] {key} must be at least {minimum:g}, not {raw!r}")
    return value


@dataclass(frozen=True)
class LocationConfig:
    """The validated C{[location]} section (see the module docstring)."""

    backend: str = "memory"
    mapURL: str | None = None
    partitionCount: int = 0
    assignments: dict[int, tuple[str, ...]] = field(default_factory=dict)
    spares: tuple[str, ...] = ()
    riskGroups: dict[str, str] = field(default_factory=dict)
    healthInterval: float = 5.0
    errorThreshold: int = 3
    reloadInterval: float = 10.0
    spareAfter: float = 30.0
    expireInterval: float = 60.0
    connectTimeout: float = 2.0
    writeMode: str = "write-through"
    nodeId: str = ""

    @classmethod
    def fromSection(cls, section: Mapping[str, str]) -> "LocationConfig":
        """Parse and validate; raise L{ConfigError} saying what is wrong."""
        for key in section:
            if key not in _KNOWN and not key.startswith(("partition.", "risk_group.")):
                raise ConfigError(f"[location] unknown option {key!r}")
        backend = section.get("backend", "memory").strip().lower()
        if backend not in ("memory", "partitioned"):
            raise ConfigError(f"[location] backend must be 'memory' or 'partitioned', not {backend!r}")
        writeMode = section.get("write_mode", "write-through").strip().lower()
        if writeMode != "write-through":
            raise ConfigError(
                f"[location] write_mode {writeMode!r} is not supported; use write-through"
            )
        common = dict(
            healthInterval=_number(section, "health_interval", 5.0, 0.1),
            errorThreshold=int(_number(section, "error_threshold", 3, 1)),
            reloadInterval=_number(section, "reload_interval", 10.0, 0.1),
            spareAfter=_number(section, "spare_after", 30.0, 0),
            expireInterval=_number(section, "expire_interval", 60.0, 0),
            connectTimeout=_number(section, "connect_timeout", 2.0, 0.1),
            writeMode=writeMode,
            nodeId=section.get("node_id", "").strip(),
        )
        inline = [k for k in section if k.startswith(("partition.", "risk_group."))] + [
            k for k in ("partitions", "spares") if k in section
        ]
        if backend == "memory":
            if "map" in section or inline:
                raise ConfigError("[location] map and partition options need backend = partitioned")
            return cls(backend="memory", **common)  # type: ignore[arg-type]
        if "map" in section:
            if inline:
                raise ConfigError(
                    f"[location] give either map (the map database) or the inline "
                    f"partition map, not both (found {', '.join(sorted(inline))})"
                )
            return cls(backend="partitioned", mapURL=_checkURL(section["map"].strip(), "map"),
                       **common)  # type: ignore[arg-type]
        assignments: dict[int, tuple[str, ...]] = {}
        riskGroups: dict[str, str] = {}
        for key, value in section.items():
            if key.startswith("partition."):
                number = key[len("partition."):]
                if not number.isdigit():
                    raise ConfigError(f"[location] {key}: partition numbers are 0, 1, 2...")
                urls = _urls(value, key)
                if len(urls) != 2:
                    raise ConfigError(f"[location] {key}: give exactly two copies, URL_A, URL_B")
                assignments[int(number)] = urls
            elif key.startswith("risk_group."):
                name = key[len("risk_group."):]
                if not name:
                    raise ConfigError(f"[location] {key}: empty risk group name")
                for url in _urls(value, key):
                    if url in riskGroups and riskGroups[url] != name:
                        raise ConfigError(f"[location] {url} is in two risk groups")
                    riskGroups[url] = name
        if not assignments:
            raise ConfigError("[location] backend = partitioned needs map = URL or partition.N lines")
        if "partitions" in section:
            count = int(_number(section, "partitions", 0, 1))
        else:
            count = max(assignments) + 1
        for n in sorted(assignments):
            if n >= count:
                raise ConfigError(
                    f"[location] unknown partition number {n} (partitions = {count}: 0..{count - 1})"
                )
        missing = [n for n in range(count) if n not in assignments]
        if missing:
            raise ConfigError(f"[location] no partition.{missing[0]} line (partitions = {count})")
        spares = _urls(section.get("spares", ""), "spares")
        known = {u for urls in assignments.values() for u in urls} | set(spares)
        for url in riskGroups:
            if url not in known:
                raise ConfigError(f"[location] risk group given for {url}, which is not in the map")
        config = cls(backend="partitioned", partitionCount=count, assignments=assignments,
                     spares=spares, riskGroups=riskGroups, **common)  # type: ignore[arg-type]
        config.partitionMap()  # validate
        return config

    def partitionMap(self) -> PartitionMap:
        """The inline partition map (raises L{ConfigError} if it is unsafe)."""
        try:
            return buildMap(self.partitionCount, sorted(self.assignments.items()),
                            self.spares, self.riskGroups)
        except MapError as e:
            raise ConfigError(f"[location] {e}") from None
