# -*- test-case-name: tests.test_location_memory -*-
"""The C{location} service: owns a location store and its timers."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger


class LocationService(Service):
    """
    A named service (C{"location"}) owning an L{ILocationStore}.

    C{startService} starts the store (arms the memory store's expiry timer,
    or loads the partition map and starts the health, reload and expiry
    loops of the partitioned store) and returns its Deferred;
    C{stopService} stops it.  Other services reach the store as C{.store}.
    """

    log = Logger()
    name = "location"

    def __init__(self, store: Any) -> None:
        self.store = store

    def startService(self) -> "defer.Deferred[None]":  # type: ignore[override]
        Service.startService(self)
        return defer.maybeDeferred(self.store.start)

    def stopService(self) -> "defer.Deferred[None]":  # type: ignore[override]
        Service.stopService(self)
        return defer.maybeDeferred(self.store.stop)

    def state(self) -> dict[str, object]:
        """The store's state as plain data (manhole, management API)."""
        getter = getattr(self.store, "state", None) or getattr(self.store, "stats", None)
        return dict(getter()) if getter is not None else {}


def locationServiceFromConfig(config: Any, reactor: Any, clock: Any = None) -> LocationService:
    """
    Build the C{location} service from a L{LocationConfig}: a memory store,
    or a partitioned store over the map database or the inline map.  No I/O
    happens until the service starts.
    """
    from voipgw.db.database import Database
    from voipgw.location.memory import MemoryLocationStore
    from voipgw.location.partitioned import (
        DatabaseMapSource,
        PartitionedLocationStore,
        StaticMapSource,
        defaultNodeId,
    )

    clock = clock if clock is not None else reactor
    if config.backend == "memory":
        return LocationService(MemoryLocationStore(clock))
    nodeId = config.nodeId or defaultNodeId()
    source: Any
    if config.mapURL is not None:
        source = DatabaseMapSource(
            Database(config.mapURL, reactor, clock, retries=1, connectTimeout=config.connectTimeout),
            nodeId,
        )
    else:
        source = StaticMapSource(config.partitionMap())
    store = PartitionedLocationStore(
        source, reactor, clock, nodeId=nodeId, errorThreshold=config.errorThreshold,
        healthInterval=config.healthInterval, reloadInterval=config.reloadInterval,
        spareAfter=config.spareAfter, expireInterval=config.expireInterval,
        connectTimeout=config.connectTimeout,
    )
    return LocationService(store)
