"""
Tests for reads from replicas: L{ReplicaSet} and L{ReplicaProber} on a
L{task.Clock}, then a real MariaDB master and replica being stopped,
killed and restarted under a L{SQLSubscriberStore}.
"""

from __future__ import annotations

import time

from sqlalchemy import create_engine
from twisted.internet import defer, reactor, task, threads
from twisted.trial.unittest import SkipTest, TestCase

from tests import mariadb
from voipgw.db.database import Database
from voipgw.db.errors import DatabaseUnavailable
from voipgw.subscribers import SQLSubscriberStore, computeHA1
from voipgw.subscribers.queries import ReplicationStatus
from voipgw.subscribers.replicas import ReplicaProber, ReplicaSet
from voipgw.subscribers.schema import MIGRATOR


class ReplicaSetTests(TestCase):
    def test_roundRobin(self) -> None:
        replicas = ReplicaSet(["a", "b", "c"])
        self.assertEqual([replicas.choose() for _ in range(4)], ["a", "b", "c", "a"])
        replicas.markDown("b", "broken")
        self.assertEqual([replicas.choose() for _ in range(4)], ["c", "a", "c", "a"])
        self.assertEqual(replicas.outReason("b"), "broken")
        self.assertEqual(replicas.choose(exclude=["c"]), "a")
        replicas.markDown("a", "x")
        replicas.markDown("c", "y")
        self.assertIsNone(replicas.choose())
        replicas.markUp("b")
        self.assertEqual(replicas.choose(), "b")
        self.assertEqual(replicas.healthy(), ["b"])

    def test_empty(self) -> None:
        self.assertIsNone(ReplicaSet([]).choose())


class ReplicaProberTests(TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.statuses: dict[str, object] = {"a": ReplicationStatus(0.0, True, True), "b": ReplicationStatus(1.0, True, True)}
        self.masterUp = True
        self.replicas = ReplicaSet(["a", "b"])
        self.prober = ReplicaProber(self.replicas, self.probe, self.clock, 5.0, 10.0, self.probeMaster)

    def probe(self, name: str) -> defer.Deferred:
        status = self.statuses[name]
        if isinstance(status, Exception):
            return defer.fail(status)
        return defer.succeed(status)

    def probeMaster(self) -> defer.Deferred:
        return defer.succeed(None) if self.masterUp else defer.fail(DatabaseUnavailable("master", "ping"))

    def test_probesOnTheClock(self) -> None:
        self.prober.start()
        self.assertEqual(self.prober.rounds, 1)
        self.statuses["a"] = ReplicationStatus(11.0, True, True)
        self.clock.advance(4.9)
        self.assertEqual(self.replicas.healthy(), ["a", "b"])
        self.clock.advance(0.1)
        self.assertEqual(self.prober.rounds, 2)
        self.assertEqual(self.replicas.healthy(), ["b"])
        self.assertIn("lag 11s", self.replicas.outReason("a") or "")
        self.statuses["a"] = ReplicationStatus(2.0, True, True)
        self.statuses["b"] = RuntimeError("connection refused")
        self.clock.advance(5)
        self.assertEqual(self.replicas.healthy(), ["a"])
        self.assertIn("connection refused", self.replicas.outReason("b") or "")
        self.prober.stop()
        self.statuses["b"] = ReplicationStatus(0.0, True, True)
        self.clock.advance(50)
        self.assertEqual(self.prober.rounds, 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_brokenReplication(self) -> None:
        self.statuses["a"] = ReplicationStatus(None, False, False, "Duplicate entry")
        self.statuses["b"] = ReplicationStatus(None, False, True)
        self.prober.probeAll()
        self.assertEqual(self.replicas.healthy(), [])
        self.assertIn("Duplicate entry", self.replicas.outReason("a") or "")

    def test_masterDownKeepsDisconnectedReplica(self) -> None:
        """
        When the master answers neither us nor the replica, a replica whose
        applier runs keeps serving; one whose applier stopped does not.
        """
        self.statuses["a"] = ReplicationStatus(None, False, True)
        self.statuses["b"] = ReplicationStatus(None, False, False)
        self.prober.probeAll()
        self.assertEqual(self.replicas.healthy(), [])
        self.masterUp = False
        self.prober.probeAll()
        self.assertFalse(self.prober.masterUp)
        self.assertEqual(self.replicas.healthy(), ["a"])

    def test_roundInFlight(self) -> None:
        pending: defer.Deferred = defer.Deferred()
        calls = []

        def slowProbe(name: str) -> defer.Deferred:
            calls.append(name)
            return pending if name == "a" else defer.succeed(ReplicationStatus(0.0, True, True))

        prober = ReplicaProber(self.replicas, slowProbe, self.clock, 1.0, 10.0)
        first = prober.probeAll()
        second = prober.probeAll()
        self.assertEqual(calls, ["a", "b"], "a second round started while one was in flight")
        self.assertNoResult(first)
        pending.callback(ReplicationStatus(0.0, True, True))
        self.successResultOf(first)
        self.successResultOf(second)


def _wait(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


class MasterReplicaTests(TestCase):
    """
    A real master and replica (private C{mariadbd}s).  The store's clock is
    a L{task.Clock}: probe rounds happen only when the test advances it.
    """

    timeout = 120

    async def _startServers(self) -> None:
        self.master = mariadb.MariaDBServer()
        self.replica = mariadb.MariaDBServer()
        self.addCleanup(self.master.destroy)
        self.addCleanup(self.replica.destroy)
        await defer.DeferredList(
            [threads.deferToThread(self.master.start), threads.deferToThread(self.replica.start)],
            fireOnOneErrback=True,
        )
        await threads.deferToThread(self.replica.replicateFrom, self.master)
        engine = create_engine(self.master.url)
        with engine.begin() as conn:
            MIGRATOR.initialise(conn)
        engine.dispose()
        await threads.deferToThread(self.replica.waitForReplication, self.master)

    async def _probeUntil(self, condition, what: str, limit: float = 20.0) -> None:
        deadline = time.monotonic() + limit
        while True:
            self.clock.advance(self.store.prober.interval)
            await self.store.prober.whenIdle()
            if condition():
                return
            if time.monotonic() > deadline:
                self.fail(f"not {what} after {limit}s: {self.store.replicas.outReason(self.replicaDB)}")
            await _wait(0.2)

    async def test_failover(self) -> None:
        reason = mariadb.mariadbAvailable()
        if reason:
            raise SkipTest(reason)
        await self._startServers()
        self.clock = task.Clock()
        self.masterDB = Database(self.master.url, reactor, name="subscribers master", retries=1, backoff=0.05, connectTimeout=1)
        self.replicaDB = Database(self.replica.url, reactor, retries=0, connectTimeout=1)
        self.addCleanup(self.masterDB.stop)
        self.addCleanup(self.replicaDB.stop)
        # No caching: every lookup is a query, so counters show who served it.
        self.store = SQLSubscriberStore(
            self.masterDB, [self.replicaDB], self.clock, cacheTTL=0, negativeTTL=0,
            maxReplicaLag=5, probeInterval=1,
        )
        self.store.startProbing()
        self.addCleanup(self.store.stopProbing)
        await self.store.prober.whenIdle()
        self.assertEqual(self.store.replicas.healthy(), [self.replicaDB])

        # Writes go to the master and replicate.
        await self.store.addSubscriber("alice", "example.com", "secret")
        await threads.deferToThread(self.replica.waitForReplication, self.master)
        self.clock.advance(10)  # past the read-your-writes window
        await self.store.prober.whenIdle()

        # Reads are served by the replica: a row that exists only there is found.
        await threads.deferToThread(
            self.replica.execute,
            "SET SESSION sql_log_bin=0",
            # An id the master will not use, so replication does not break.
            "INSERT INTO subscriber (id, username, domain, ha1, ha1_sha256, created, updated) "
            "VALUES (1000000, 'ghost', 'example.com', 'x', 'y', NOW(), NOW())",
            database="voipgw",
        )
        masterQueries = self.masterDB.queries
        ghost = await self.store.getSubscriber("ghost", "example.com")
        self.assertIsNotNone(ghost)
        alice = await self.store.getSubscriber("alice", "example.com")
        assert alice is not None
        self.assertEqual(alice.ha1, computeHA1("alice", "example.com", "secret"))
        self.assertEqual(self.masterDB.queries, masterQueries, "a read went to the master")

        # Stop the replica: reads fall back to the master at once.
        await threads.deferToThread(self.replica.stop)
        alice = await self.store.getSubscriber("alice", "example.com")
        self.assertIsNotNone(alice)
        self.assertEqual(self.store.replicas.healthy(), [])
        self.assertIsNone(await self.store.getSubscriber("ghost", "example.com"), "read not from the master")
        self.clock.advance(1)
        await self.store.prober.whenIdle()
        self.assertEqual(self.store.replicas.healthy(), [])
        self.assertIn("probe failed", self.store.replicas.outReason(self.replicaDB) or "")

        # Restart it: the probe brings it back and reads go to it again.
        await threads.deferToThread(self.replica.start)
        await self._probeUntil(lambda: self.store.replicas.healthy() == [self.replicaDB], "back in service")
        self.assertIsNotNone(await self.store.getSubscriber("ghost", "example.com"))

        # Kill the master: reads continue from the replica, writes fail clearly.
        await threads.deferToThread(self.master.kill)
        alice = await self.store.getSubscriber("alice", "example.com")
        self.assertIsNotNone(alice)
        with self.assertRaises(DatabaseUnavailable) as caught:
            await self.store.addSubscriber("bob", "example.com", "pw")
        self.assertIn("master", str(caught.exception))
        self.assertIn("add subscriber", str(caught.exception))
        with self.assertRaises(DatabaseUnavailable):
            await self.store.setPassword("alice", "example.com", "pw")
        # Probing while the master is down keeps the replica in service, and
        # the recently written key falls back to the replica too.
        await self._probeUntil(lambda: not self.store.prober.masterUp, "master seen down")
        await self._probeUntil(lambda: self.store.replicas.healthy() == [self.replicaDB], "replica kept")
        self.assertIsNotNone(await self.store.getSubscriber("alice", "example.com"))

        # Restart the master: writes work again and replicate.
        await threads.deferToThread(self.master.start)
        await self.store.addSubscriber("bob", "example.com", "pw")
        await threads.deferToThread(self.replica.waitForReplication, self.master)
        await self._probeUntil(
            lambda: self.store.prober.masterUp and self.store.replicas.healthy() == [self.replicaDB],
            "master and replica healthy",
        )
        self.clock.advance(10)
        masterQueries = self.masterDB.queries
        bob = await self.store.getSubscriber("bob", "example.com")
        assert bob is not None
        self.assertEqual(bob.ha1, computeHA1("bob", "example.com", "pw"))
        self.assertEqual(self.masterDB.queries, masterQueries)
