"""Tests for L{SubscriberConfig}, L{subscriberStoreFromConfig} and L{SubscriberService}."""

from __future__ import annotations

import os

from twisted.application.service import IService, MultiService
from twisted.internet import reactor, task
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface.verify import verifyObject

from tests import mariadb
from voipgw.db.migrations import SchemaError
from voipgw.interfaces import ISubscriberStore
from voipgw.subscribers import ConfigError, SubscriberConfig, SubscriberService, subscriberStoreFromConfig


class SubscriberConfigTests(TestCase):
    def test_defaults(self) -> None:
        config = SubscriberConfig.fromSection({})
        self.assertEqual(config, SubscriberConfig())
        self.assertEqual(config.master, "sqlite:///data/subscribers.sqlite")
        self.assertEqual(config.replicas, ())

    def test_values(self) -> None:
        config = SubscriberConfig.fromSection(
            {
                "master": "mysql+mysqldb://voipgw:pw@db1/voipgw",
                "replicas": " mysql+mysqldb://voipgw:pw@db2/voipgw , mysql+mysqldb://voipgw:pw@db3/voipgw,",
                "cache_ttl": "30",
                "cache_size": "5000",
                "max_replica_lag": "2.5",
                "probe_interval": "1",
            }
        )
        self.assertEqual(
            config.replicas, ("mysql+mysqldb://voipgw:pw@db2/voipgw", "mysql+mysqldb://voipgw:pw@db3/voipgw")
        )
        self.assertEqual((config.cacheTTL, config.negativeCacheTTL, config.cacheSize), (30.0, 2.0, 5000))
        self.assertEqual((config.maxReplicaLag, config.probeInterval), (2.5, 1.0))
        self.assertEqual(SubscriberConfig.fromSection({"cache_ttl": "1"}).negativeCacheTTL, 1.0)

    def test_errors(self) -> None:
        for section, message in (
            ({"cache_ttl": "soon"}, "[subscribers] cache_ttl must be a number, not 'soon'"),
            ({"cache_ttl": "-1"}, "cache_ttl must be at least 0"),
            ({"cache_ttl": "nan"}, "cache_ttl must be at least 0"),
            ({"cache_size": "1.5"}, "cache_size must be an integer"),
            ({"cache_size": "0"}, "cache_size must be at least 1"),
            ({"probe_interval": "0"}, "probe_interval must be at least 0.1"),
            ({"max_replica_lag": "x"}, "max_replica_lag must be a number"),
            ({"master": "postgresql://h/db"}, "unsupported [subscribers] master URL"),
            ({"master": "::nonsense"}, "invalid [subscribers] master URL"),
            ({"master": "mysql+mysqldb://h"}, "names no database"),
            ({"replicas": "mysql+mysqldb://h/db"}, "replicas need a MySQL/MariaDB master"),
            ({"master": "mysql+mysqldb://h/db", "replicas": "mysql+mysqldb://h/db"}, "listed twice"),
            ({"cache": "1"}, "unknown key cache"),
        ):
            error = self.assertRaises(ConfigError, SubscriberConfig.fromSection, section)
            self.assertIn(message, str(error))
            self.assertIsInstance(error, ValueError)


class SubscriberServiceTests(TestCase):
    def test_factory(self) -> None:
        store = subscriberStoreFromConfig(
            "mysql+mysqldb://u:secret@db1/voipgw", ["mysql+mysqldb://u:secret@db2/voipgw"], reactor,
            task.Clock(), cacheTTL=3, cacheSize=7, maxReplicaLag=1, probeInterval=2,
        )
        self.assertTrue(verifyObject(ISubscriberStore, store))
        self.assertEqual((store.cache.ttl, store.cache.negativeTTL, store.cache.maxSize), (3, 2.0, 7))
        self.assertEqual((store.prober.maxLag, store.prober.interval), (1, 2))
        self.assertNotIn("secret", store.master.name)
        self.assertEqual(len(store.replicas.members), 1)
        self.assertRaises(ValueError, subscriberStoreFromConfig, "nope://", [], reactor)

    async def test_embeddedSQLite(self) -> None:
        """Start creates the SQLite file and schema; stop releases everything."""
        directory = os.path.abspath(self.mktemp())
        config = SubscriberConfig.fromSection({"master": f"sqlite:///{directory}/data/subscribers.sqlite"})
        service = SubscriberService.fromConfig(config, reactor, task.Clock())
        self.assertEqual(service.name, "subscribers")
        self.assertTrue(verifyObject(IService, service))
        parent = MultiService()
        service.setServiceParent(parent)
        await service.startService()
        self.assertTrue(service.running)
        self.assertTrue(os.path.exists(os.path.join(directory, "data", "subscribers.sqlite")))
        await service.store.addSubscriber("alice", "example.com", "pw")
        self.assertIsNotNone(await service.store.getSubscriber("alice", "example.com"))
        await service.stopService()
        self.assertFalse(service.running)
        self.assertFalse(service.store.master._pool.started)

    async def test_probingOnTheClock(self) -> None:
        """The service starts and stops the replica probe timer."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        clock = task.Clock()
        store = subscriberStoreFromConfig(
            f"sqlite:///{directory}/m.sqlite", [f"sqlite:///{directory}/m.sqlite"], reactor, clock, probeInterval=3,
        )
        service = SubscriberService(store)
        await service.startService()
        await store.prober.whenIdle()
        self.assertEqual(store.prober.rounds, 1)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(3)
        await store.prober.whenIdle()
        self.assertEqual(store.prober.rounds, 2)
        self.assertEqual(store.replicas.healthy(), list(store.replicas.members))
        await service.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_mysqlWithoutSchema(self) -> None:
        """A MySQL master without a schema is refused with a pointer to 'db init'."""
        reason = mariadb.sharedServerReason()
        if reason:
            raise SkipTest(reason)
        url, name = mariadb.createScratchDatabase()
        self.addCleanup(mariadb.dropDatabase, name)
        service = SubscriberService(subscriberStoreFromConfig(url, [], reactor, task.Clock()))
        with self.assertRaises(SchemaError) as caught:
            await service.startService()
        self.assertIn("db init", str(caught.exception))
        self.assertFalse(service.store.master._pool.started)

    async def test_masterDownAtStart(self) -> None:
        """An unreachable master does not stop the node from starting."""
        port = mariadb.freePort()
        store = subscriberStoreFromConfig(
            f"mysql+mysqldb://root@127.0.0.1:{port}/x", [], reactor, masterRetries=0, connectTimeout=1,
        )
        service = SubscriberService(store)
        await service.startService()
        self.assertTrue(service.running)
        await service.stopService()
