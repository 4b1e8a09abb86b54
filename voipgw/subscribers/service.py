# -*- test-case-name: tests.test_subscribers_service -*-
"""
The C{subscribers} service of a node: owns the databases and the replica
probe timer of one L{SQLSubscriberStore}.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from sqlalchemy.engine import make_url
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from voipgw.db.database import Database, redactURL
from voipgw.db.errors import DatabaseUnavailable
from voipgw.db.migrations import SchemaError
from voipgw.subscribers.config import SubscriberConfig, validateURL
from voipgw.subscribers.schema import MIGRATOR
from voipgw.subscribers.store import SQLSubscriberStore


def subscriberStoreFromConfig(
    master: str,
    replicas: Sequence[str],
    reactor: Any,
    clock: Any = None,
    *,
    cacheTTL: float = 10.0,
    negativeCacheTTL: float | None = None,
    cacheSize: int = 100_000,
    maxReplicaLag: float = 5.0,
    probeInterval: float = 5.0,
    connectTimeout: float = 2.0,
    masterRetries: int = 2,
    maxThreads: int = 4,
) -> SQLSubscriberStore:
    """
    A store for C{master} and C{replicas} (URLs); no I/O happens here.

    Replicas are given no retries (a failing replica is skipped at once and
    probed back in); the master retries operational errors C{masterRetries}
    times before failing with L{DatabaseUnavailable}.
    """
    clock = clock if clock is not None else reactor
    masterDB = Database(
        validateURL(master, "master URL"),
        reactor,
        clock,
        name="subscribers master " + redactURL(master),
        retries=masterRetries,
        connectTimeout=connectTimeout,
        maxThreads=maxThreads,
    )
    replicaDBs = [
        Database(
            validateURL(url, "replica URL"),
            reactor,
            clock,
            name="subscribers replica " + redactURL(url),
            retries=0,
            connectTimeout=connectTimeout,
            maxThreads=maxThreads,
        )
        for url in replicas
    ]
    return SQLSubscriberStore(
        masterDB,
        replicaDBs,
        clock,
        cacheTTL=cacheTTL,
        negativeTTL=min(2.0, cacheTTL) if negativeCacheTTL is None else negativeCacheTTL,
        cacheSize=cacheSize,
        maxReplicaLag=maxReplicaLag,
        probeInterval=probeInterval,
    )


class SubscriberService(Service):
    """
    Starts and stops a L{SQLSubscriberStore}: its database thread pools and
    its replica probing.  The store is usable (C{.store}) once
    C{startService}'s Deferred has fired.

    On start, the master's schema version is checked.  An embedded SQLite
    database without a schema is created (with its directory); a MySQL one
    must have been created with C{voipgw-admin db init}.  A master that is
    unreachable at start is logged and does not stop the node: reads are
    served by the replicas and writes fail until it returns.
    """

    name = "subscribers"
    log = Logger()

    def __init__(self, store: SQLSubscriberStore, createSQLiteSchema: bool = True, preload: bool = False) -> None:
        self.store = store
        self.createSQLiteSchema = createSQLiteSchema
        self.preload = preload

    @classmethod
    def fromConfig(cls, config: SubscriberConfig, reactor: Any, clock: Any = None) -> "SubscriberService":
        return cls(
            subscriberStoreFromConfig(
                config.master,
                config.replicas,
                reactor,
                clock,
                cacheTTL=config.cacheTTL,
                negativeCacheTTL=config.negativeCacheTTL,
                cacheSize=config.cacheSize,
                maxReplicaLag=config.maxReplicaLag,
                probeInterval=config.probeInterval,
            ),
            preload=config.preload,
        )

    def _databases(self) -> list[Database]:
        return [self.store.master, *self.store.replicas.members]

    def startService(self) -> "defer.Deferred[None]":  # type: ignore[override]
        Service.startService(self)
        return defer.ensureDeferred(self._start())

    async def _start(self) -> None:
        for db in self._databases():
            db.start()
        master = self.store.master
        create = self.createSQLiteSchema and master.dialect == "sqlite"
        if create:
            database = make_url(master.url).database
            if database and database != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
        try:
            await master.runInteraction(
                "check subscriber schema", MIGRATOR.initialise if create else MIGRATOR.check
            )
        except DatabaseUnavailable as e:
            self.log.warn(
                "subscriber master unavailable at start ({error}); serving reads from replicas",
                error=str(e),
            )
        except SchemaError:
            for db in self._databases():
                db.stop()
            raise
        self.store.startProbing()
        if self.preload:
            try:
                count = await self.store.preload()
            except Exception as e:  # a slow or failing database must not stop the node
                self.log.warn("subscriber cache preload failed: {error}", error=str(e))
            else:
                self.log.info("subscriber cache preloaded with {count} subscribers", count=count)
        self.log.info(
            "subscriber store started: master {master}, {count} replicas",
            master=master.name,
            count=len(self.store.replicas.members),
        )

    def stopService(self) -> "defer.Deferred[None]":  # type: ignore[override]
        Service.stopService(self)
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        await self.store.stopProbing()
        for db in self._databases():
            db.stop()
