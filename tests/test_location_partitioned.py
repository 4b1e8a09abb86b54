"""
Tests for L{voipgw.location.partitioned} on real MariaDB servers: the store
contract, failover while saving, both copies down, spare promotion with
resync, a returning server resynchronised before it serves reads, two nodes
sharing the map, and expiry leases.

Layout (private servers from L{tests.test_location_support})::

    partition 0: A (rackA), B (rackB)      spare: E (rackC)
    partition 1: C (rackA), D (rackB)      map database: on server M
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import create_engine
from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SkipTest, TestCase

from tests import test_location_support as support
from voipgw.db.database import Database
from voipgw.location import queries
from voipgw.location.errors import PartitionUnavailable
from voipgw.location.partitioned import DatabaseMapSource, PartitionedLocationStore
from voipgw.location.config import LocationConfig
from voipgw.location.partitioning import CopyState, CopyStatus, partitionOf
from voipgw.location.service import locationServiceFromConfig
from voipgw.location.schema import MAP_MIGRATOR
from voipgw.location.testing import LocationStoreTestsMixin, makeBinding


def aorsIn(partition: int, count: int, partitions: int = 2, prefix: str = "sub") -> list[str]:
    out, i = [], 0
    while len(out) < count:
        aor = f"{prefix}{i}@example.com"
        if partitionOf(aor, partitions) == partition:
            out.append(aor)
        i += 1
    return out


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


class Platform:
    """Fresh databases for one test on the shared private servers."""

    def __init__(self) -> None:
        self.servers = support.servers(6)
        a, b, c, d, e, m = self.servers
        self.byName = dict(A=a, B=b, C=c, D=d, E=e, M=m)
        self.urls = {name: support.newDatabase(s) for name, s in self.byName.items()}
        self.mapURL = self.urls["M"]
        self.groups = dict(A="rackA", B="rackB", C="rackA", D="rackB", E="rackC")
        self.writeMap()

    def copies(self) -> list[CopyState]:
        u, g = self.urls, self.groups
        return [
            CopyState(u["A"], 0, 1, riskGroup=g["A"]), CopyState(u["B"], 0, 2, riskGroup=g["B"]),
            CopyState(u["C"], 1, 1, riskGroup=g["C"]), CopyState(u["D"], 1, 2, riskGroup=g["D"]),
            CopyState(u["E"], None, 0, spare=True, riskGroup=g["E"]),
        ]

    def mapEngine(self) -> Any:
        return create_engine(self.mapURL)

    def writeMap(self) -> None:
        engine = self.mapEngine()
        try:
            with engine.begin() as conn:
                queries.ensureSchema(conn, MAP_MIGRATOR)
                queries.writeMap(conn, 2, self.copies(), time.time(), "test")
        finally:
            engine.dispose()

    def sharedMap(self) -> dict[str, CopyState]:
        engine = self.mapEngine()
        try:
            with engine.begin() as conn:
                return {c.url: c for c in queries.loadMap(conn)[1]}
        finally:
            engine.dispose()

    def rows(self, name: str) -> set:
        return support.rows(self.byName[name], self.urls[name])

    def cleanup(self) -> None:
        for name, s in self.byName.items():
            support.ensureRunning(s)
            support.dropDatabase(self.urls[name], s)

    def kill(self, name: str) -> None:
        self.byName[name].kill()

    def restart(self, name: str) -> None:
        support.ensureRunning(self.byName[name])


class PlatformMixin:
    settleDelay = 0.0

    def setUp(self) -> Any:
        reason = support.skipReason()
        if reason:
            raise SkipTest(reason)
        self.platform = Platform()
        self.addCleanup(self.platform.cleanup)  # type: ignore[attr-defined]
        self.stores: list[PartitionedLocationStore] = []
        self.store = self.makeStore("node1")
        return self.store.start()

    def makeStore(self, nodeId: str, start: bool = False, **kw: Any) -> PartitionedLocationStore:
        options: dict[str, Any] = dict(
            nodeId=nodeId, errorThreshold=2, healthInterval=0, reloadInterval=0,
            spareAfter=0, expireInterval=0, settleDelay=self.settleDelay, connectTimeout=1.0,
        )
        options.update(kw)
        source = DatabaseMapSource(
            Database(self.platform.mapURL, reactor, retries=1, connectTimeout=1.0), nodeId)
        store = PartitionedLocationStore(source, reactor, **options)
        self.stores.append(store)
        self.addCleanup(store.stop)  # type: ignore[attr-defined]
        return store

    def currentTime(self) -> float:
        return time.time()

    async def waitForResyncs(self, store: PartitionedLocationStore) -> None:
        while store._syncing:
            await defer.DeferredList(list(store._syncing.values()), consumeErrors=True)


class PartitionedContractTests(PlatformMixin, LocationStoreTestsMixin, TestCase):
    """The L{ILocationStore} contract on the partitioned store."""

    async def test_spreadOverPartitions(self) -> None:
        now = time.time()
        for aor in aorsIn(0, 3) + aorsIn(1, 3):
            await self.store.save(makeBinding(aor, 1, now + 600))
        self.assertEqual(len(self.platform.rows("A")), 3)
        self.assertEqual(self.platform.rows("A"), self.platform.rows("B"))
        self.assertEqual(len(self.platform.rows("C")), 3)
        self.assertEqual(self.platform.rows("C"), self.platform.rows("D"))

    def test_state(self) -> None:
        state = self.store.state()
        self.assertEqual(state["partitions"], 2)
        parts = state["map"]["partitions"]  # type: ignore[index]
        self.assertEqual([c["status"] for c in parts[0]["copies"]], ["on", "on"])
        self.assertEqual(state["node"], "node1")


class FailoverTests(PlatformMixin, TestCase):
    async def test_killCopyDuringSaves(self) -> None:
        """No acknowledged save is lost when a copy dies mid-stream; p1 is untouched."""
        now = time.time()
        p0, p1 = aorsIn(0, 150), aorsIn(1, 150)
        work = [a for pair in zip(p0, p1) for a in pair]
        saved: list[Any] = []
        failed: list[Any] = []
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        async def saveOne(aor: str) -> None:
            b = makeBinding(aor, 1, now + 600)
            try:
                await self.store.save(b)
            except Exception as e:
                failed.append((aor, e))
            else:
                saved.append(b)

        for i in range(0, len(work), 10):
            if i == 100:
                self.platform.kill("B")
                self.addCleanup(self.platform.restart, "B")
            await defer.DeferredList([defer.ensureDeferred(saveOne(a)) for a in work[i:i + 10]])
        self.assertEqual(failed, [])
        self.assertEqual(len(saved), 300)
        for b in saved:
            self.assertEqual(await self.store.lookup(b.aor, now), [b])
        m = self.store.map
        self.assertEqual(m.copy(self.platform.urls["B"]).status, CopyStatus.OFF)
        self.assertEqual([c.status for c in m.copiesOf(1)], [CopyStatus.ON, CopyStatus.ON])
        self.assertEqual(self.platform.sharedMap()[self.platform.urls["B"]].status, CopyStatus.OFF)
        self.assertEqual(len(self.platform.rows("A")), 150)
        self.assertEqual(len(self.platform.rows("C")), 150)
        self.assertEqual(self.platform.rows("C"), self.platform.rows("D"))
        self.assertEqual(self.store.counters["failovers"], 1)
        [decision] = [e for e in events if e.get("action") == "off"]
        self.assertEqual((decision["partition"], decision["node"]), (0, "node1"))
        self.assertEqual(decision["url"], self.platform.urls["B"])  # no password to hide
        self.assertIn("failed", decision["reason"])

    async def test_bothCopiesDown(self) -> None:
        now = time.time()
        a0, a1 = aorsIn(0, 1)[0], aorsIn(1, 1)[0]
        await self.store.save(makeBinding(a0, 1, now + 600))
        self.platform.kill("A")
        self.platform.kill("B")
        self.addCleanup(self.platform.restart, "A")
        self.addCleanup(self.platform.restart, "B")
        e = await self.assertFailure(self.store.save(makeBinding(a0, 2, now + 600)), PartitionUnavailable)
        self.assertEqual(e.partition, 0)
        e = await self.assertFailure(self.store.lookup(a0, now), PartitionUnavailable)
        self.assertEqual(e.partition, 0)
        await self.assertFailure(self.store.count(), PartitionUnavailable)
        # partition 1 keeps working
        b1 = makeBinding(a1, 1, now + 600)
        await self.store.save(b1)
        self.assertEqual(await self.store.lookup(a1, now), [b1])
        # A comes back first: no live peer, it serves as it is; B is then resynced from A
        self.platform.restart("A")
        await self.store.checkHealth()
        self.assertEqual(self.store.map.copy(self.platform.urls["A"]).status, CopyStatus.ON)
        self.assertEqual(len(await self.store.lookup(a0, now)), 1)
        self.platform.restart("B")
        await self.store.checkHealth()
        await self.waitForResyncs(self.store)
        self.assertEqual(self.store.map.copy(self.platform.urls["B"]).status, CopyStatus.ON)
        self.assertEqual(self.platform.rows("A"), self.platform.rows("B"))

    async def test_sparePromotion(self) -> None:
        """A failed copy is replaced by the spare, resynced from the survivor."""
        now = time.time()
        aors = aorsIn(0, 40)
        for aor in aors[:20]:
            await self.store.save(makeBinding(aor, 1, now + 600))
        self.platform.kill("B")
        self.addCleanup(self.platform.restart, "B")
        for aor in aors[20:]:
            await self.store.save(makeBinding(aor, 1, now + 600))
        self.assertEqual(self.store.map.copy(self.platform.urls["B"]).status, CopyStatus.OFF)
        await self.store.checkHealth()
        urls = self.platform.urls
        self.assertEqual(self.store.counters["promotions"], 1)
        await self.waitForResyncs(self.store)
        self.assertEqual([(c.url, c.status) for c in self.store.map.copiesOf(0)],
                         [(urls["A"], CopyStatus.ON), (urls["E"], CopyStatus.ON)])
        self.assertEqual([c.url for c in self.store.map.spares()], [urls["B"]])
        shared = self.platform.sharedMap()
        self.assertEqual((shared[urls["E"]].partition, shared[urls["E"]].copyNo,
                          shared[urls["E"]].status), (0, 2, CopyStatus.ON))
        self.assertTrue(shared[urls["B"]].spare)
        self.assertEqual(len(self.platform.rows("E")), 40)
        self.assertEqual(self.platform.rows("A"), self.platform.rows("E"))
        # now lose A as well: E serves everything
        self.platform.kill("A")
        self.addCleanup(self.platform.restart, "A")
        for aor in aors:
            self.assertEqual(len(await self.store.lookup(aor, now)), 1, aor)
        self.assertEqual(self.store.map.copy(urls["A"]).status, CopyStatus.OFF)
        # the old server B answers again: it becomes an available spare, and,
        # A being off, it is promoted at once to replace A, resynced from E
        self.platform.restart("B")
        await self.store.checkHealth()
        self.assertEqual(self.store.counters["promotions"], 2)
        await self.waitForResyncs(self.store)
        self.assertEqual([(c.url, c.copyNo, c.status) for c in self.store.map.copiesOf(0)],
                         [(urls["B"], 1, CopyStatus.ON), (urls["E"], 2, CopyStatus.ON)])
        self.assertEqual([c.url for c in self.store.map.spares()], [urls["A"]])
        self.assertEqual(self.platform.rows("B"), self.platform.rows("E"))


class ReturningServerTests(PlatformMixin, TestCase):
    settleDelay = 0.5

    async def test_resyncBeforeReads(self) -> None:
        now = time.time()
        aors = aorsIn(0, 30)
        for aor in aors[:20]:
            await self.store.save(makeBinding(aor, 1, now + 600))
        self.platform.kill("B")
        self.addCleanup(self.platform.restart, "B")
        for aor in aors[20:]:
            await self.store.save(makeBinding(aor, 1, now + 600))
        for aor in aors[:5]:
            self.assertEqual(await self.store.removeAll(aor), 1)
        refreshed = makeBinding(aors[5], 1, now + 900, updated=now + 1)
        await self.store.save(refreshed)
        self.store.resyncChunk = 7  # several chunks
        self.platform.restart("B")
        urls = self.platform.urls
        await self.store.checkHealth()
        # syncing: receives writes, serves no reads
        self.assertEqual(self.store.map.copy(urls["B"]).status, CopyStatus.SYNCING)
        self.assertEqual([c.url for c in self.store.map.readCopies(0)], [urls["A"]])
        self.assertEqual([c.url for c in self.store.map.writeCopies(0)], [urls["A"], urls["B"]])
        self.assertEqual(self.platform.sharedMap()[urls["B"]].status, CopyStatus.SYNCING)
        during = makeBinding(aors[6], 2, now + 700)
        await self.store.save(during)  # written to both during the resync
        await self.waitForResyncs(self.store)
        self.assertEqual(self.store.map.copy(urls["B"]).status, CopyStatus.ON)
        self.assertEqual(self.platform.sharedMap()[urls["B"]].status, CopyStatus.ON)
        self.assertEqual(self.platform.rows("A"), self.platform.rows("B"))
        self.assertEqual(self.store.counters["resyncs"], 1)
        # B alone has everything A had
        self.platform.kill("A")
        self.addCleanup(self.platform.restart, "A")
        for aor in aors[:5]:
            self.assertEqual(await self.store.lookup(aor, now), [])
        self.assertEqual(await self.store.lookup(aors[5], now), [refreshed])
        self.assertEqual(len(await self.store.lookup(aors[6], now)), 2)
        for aor in aors[7:]:
            self.assertEqual(len(await self.store.lookup(aor, now)), 1)


class TwoNodeTests(PlatformMixin, TestCase):
    async def test_shareBindingsAndFailover(self) -> None:
        node2 = self.makeStore("node2")
        await node2.start()
        now = time.time()
        a0 = aorsIn(0, 3)
        b = makeBinding(a0[0], 1, now + 600)
        await self.store.save(b)
        self.assertEqual(await node2.lookup(b.aor, now), [b])
        await node2.remove(b.aor, b.key)
        self.assertEqual(await self.store.lookup(b.aor, now), [])
        # node1 takes B out; node2 follows at its next reload
        urls = self.platform.urls
        self.platform.kill("B")
        self.addCleanup(self.platform.restart, "B")
        await self.store.save(makeBinding(a0[1], 1, now + 600))
        self.assertEqual(self.store.map.copy(urls["B"]).status, CopyStatus.OFF)
        self.assertEqual(node2.map.copy(urls["B"]).status, CopyStatus.ON)
        await node2.reload()
        self.assertEqual(node2.map.copy(urls["B"]).status, CopyStatus.OFF)
        self.assertEqual(node2.counters["mapChanges"], 1)
        await node2.save(makeBinding(a0[2], 1, now + 600))
        self.assertEqual(node2.counters["copyErrors"], 0)  # never tried B
        self.assertEqual(len(await node2.lookup(a0[1], now)), 1)

    async def test_periodicReload(self) -> None:
        node2 = self.makeStore("node2", reloadInterval=0.2)
        await node2.start()
        urls = self.platform.urls
        engine = self.platform.mapEngine()
        with engine.begin() as conn:
            queries.setStatus(conn, urls["C"], CopyStatus.MAINTENANCE, time.time(), "operator")
        engine.dispose()
        for _ in range(20):
            await sleep(0.1)
            if node2.map.copy(urls["C"]).status is CopyStatus.MAINTENANCE:
                break
        self.assertEqual(node2.map.copy(urls["C"]).status, CopyStatus.MAINTENANCE)
        self.assertEqual([c.url for c in node2.map.readCopies(1)], [urls["D"]])

    async def test_expiryLease(self) -> None:
        """Expired rows are deleted by the lease holder only."""
        node2 = self.makeStore("node2")
        await node2.start()
        now = time.time()
        for aor in aorsIn(0, 3) + aorsIn(1, 3):
            await self.store.save(makeBinding(aor, 1, now + 5))
        self.assertEqual(await self.store.expire(now + 10), 6)
        for aor in aorsIn(0, 2, prefix="late"):
            await self.store.save(makeBinding(aor, 1, now + 5))
        self.assertEqual(await node2.expire(now + 10), 0)  # node1 holds both leases
        self.assertEqual(len(self.platform.rows("A")), 2)
        self.assertEqual(await self.store.expire(now + 10), 2)
        self.assertEqual(self.platform.rows("B"), set())


class InlineConfigServiceTests(TestCase):
    """The service built from an inline [location] section, its loops on the real clock."""

    def setUp(self) -> None:
        reason = support.skipReason()
        if reason:
            raise SkipTest(reason)
        self.platform = Platform()
        self.addCleanup(self.platform.cleanup)

    async def test_serviceFailsOverOnItsOwn(self) -> None:
        u = self.platform.urls
        section = {
            "backend": "partitioned",
            "partition.0": f"{u['A']}, {u['B']}",
            "partition.1": f"{u['C']}, {u['D']}",
            "spares": u["E"],
            "risk_group.rackA": f"{u['A']}, {u['C']}",
            "risk_group.rackB": f"{u['B']}, {u['D']}",
            "risk_group.rackC": u["E"],
            "health_interval": "0.2",
            "error_threshold": "1",
            "spare_after": "0.3",
            "expire_interval": "0.5",
            "connect_timeout": "1",
            "node_id": "inline-node",
        }
        service = locationServiceFromConfig(LocationConfig.fromSection(section), reactor)
        await service.startService()
        self.addCleanup(service.stopService)
        store = service.store
        now = time.time()
        aors = aorsIn(0, 10)
        for aor in aors:
            await store.save(makeBinding(aor, 1, now + 600))
        await store.save(makeBinding(aorsIn(1, 1)[0], 1, now + 0.2))
        self.platform.kill("B")
        self.addCleanup(self.platform.restart, "B")
        # the health loop notices, promotes the spare and resyncs it from A
        for _ in range(100):
            await sleep(0.1)
            copies = store.map.copiesOf(0)
            if ([c.url for c in copies] == [u["A"], u["E"]] and copies[1].status is CopyStatus.ON
                    and store.counters["expired"] >= 1):
                break
        self.assertEqual([(c.url, c.status) for c in store.map.copiesOf(0)],
                         [(u["A"], CopyStatus.ON), (u["E"], CopyStatus.ON)])
        self.assertEqual(self.platform.rows("A"), self.platform.rows("E"))
        self.assertEqual(len(self.platform.rows("E")), 10)
        # the expiry loop removed the short binding of partition 1
        self.assertEqual(self.platform.rows("C"), set())
        state = service.state()
        self.assertEqual(state["counters"]["promotions"], 1)  # type: ignore[index]
        self.assertGreaterEqual(state["counters"]["expired"], 1)  # type: ignore[index]
