"""Tests for L{voipgw.location.config} and L{locationServiceFromConfig}."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from voipgw.interfaces import ILocationStore
from voipgw.location.config import LocationConfig
from voipgw.location.errors import ConfigError
from voipgw.location.memory import MemoryLocationStore
from voipgw.location.partitioned import DatabaseMapSource, PartitionedLocationStore, StaticMapSource
from voipgw.location.service import locationServiceFromConfig


def u(host: str, db: str = "loc") -> str:
    return f"mysql+mysqldb://voipgw:secret@{host}:3306/{db}"


INLINE = {
    "backend": "partitioned",
    "partition.0": f"{u('db1')}, {u('db2')}",
    "partition.1": f"{u('db3')}, {u('db4')}",
    "spares": u("db5"),
    "health_interval": "2",
    "error_threshold": "4",
    "reload_interval": "15",
}


class ConfigTests(TestCase):
    def error(self, section: dict[str, str]) -> str:
        return str(self.assertRaises(ConfigError, LocationConfig.fromSection, section))

    def test_memoryDefault(self) -> None:
        config = LocationConfig.fromSection({})
        self.assertEqual(config.backend, "memory")
        self.assertIsInstance(config, LocationConfig)

    def test_inline(self) -> None:
        config = LocationConfig.fromSection(INLINE)
        self.assertEqual(config.partitionCount, 2)
        self.assertEqual(config.assignments[1], (u("db3"), u("db4")))
        self.assertEqual(config.spares, (u("db5"),))
        self.assertEqual((config.healthInterval, config.errorThreshold, config.reloadInterval),
                         (2.0, 4, 15.0))
        m = config.partitionMap()
        self.assertEqual([c.url for c in m.copiesOf(0)], [u("db1"), u("db2")])
        self.assertEqual(m.copy(u("db2")).riskGroup, "db2")

    def test_riskGroups(self) -> None:
        section = dict(INLINE, **{"risk_group.rackA": f"{u('db1')}, {u('db3')}",
                                  "risk_group.rackB": f"{u('db2')},{u('db4')}"})
        m = LocationConfig.fromSection(section).partitionMap()
        self.assertEqual([c.riskGroup for c in m.copiesOf(1)], ["rackA", "rackB"])

    def test_sameRiskGroup(self) -> None:
        section = dict(INLINE, **{"risk_group.rack1": f"{u('db1')}, {u('db2')}"})
        self.assertIn("both copies of partition 0 are in risk group 'rack1'", self.error(section))

    def test_unknownPartition(self) -> None:
        section = dict(INLINE, partitions="2", **{"partition.2": f"{u('db6')}, {u('db7')}"})
        self.assertIn("unknown partition number 2", self.error(section))

    def test_missingPartition(self) -> None:
        section = {"backend": "partitioned", "partition.1": f"{u('db3')}, {u('db4')}"}
        self.assertIn("no partition.0 line", self.error(section))

    def test_twoPartitionsOneDatabase(self) -> None:
        section = dict(INLINE, **{"partition.1": f"{u('db1')}, {u('db4')}"})
        self.assertIn("listed twice", self.error(section))

    def test_copiesOnOneServer(self) -> None:
        section = dict(INLINE, **{"partition.1": f"{u('db3', 'a')}, {u('db3', 'b')}"})
        self.assertIn("both copies of partition 1 are on server db3:3306", self.error(section))

    def test_badURL(self) -> None:
        self.assertIn("bad database URL", self.error(dict(INLINE, **{"partition.0": "nonsense, x"})))
        self.assertIn("not a MySQL/MariaDB URL",
                      self.error(dict(INLINE, **{"partition.0": f"sqlite:///x.db, {u('db2')}"})))
        self.assertIn("names no database", self.error({"backend": "partitioned",
                                                       "map": "mysql+mysqldb://u@h"}))

    def test_oneCopy(self) -> None:
        self.assertIn("exactly two copies", self.error(dict(INLINE, **{"partition.0": u("db1")})))

    def test_mapAndInline(self) -> None:
        self.assertIn("not both", self.error(dict(INLINE, map=u("mapdb", "map"))))

    def test_map(self) -> None:
        config = LocationConfig.fromSection({"backend": "partitioned", "map": u("mapdb", "map"),
                                             "node_id": "n1"})
        self.assertEqual(config.mapURL, u("mapdb", "map"))
        self.assertEqual(config.nodeId, "n1")

    def test_badValues(self) -> None:
        self.assertIn("backend must be", self.error({"backend": "redis"}))
        self.assertIn("unknown option 'helth_interval'", self.error({"helth_interval": "1"}))
        self.assertIn("health_interval must be a number", self.error(dict(INLINE, health_interval="x")))
        self.assertIn("error_threshold must be at least 1", self.error(dict(INLINE, error_threshold="0")))
        self.assertIn("write-back", self.error(dict(INLINE, write_mode="write-back")))
        self.assertIn("need backend = partitioned", self.error({"map": u("m")}))
        self.assertIn("needs map = URL", self.error({"backend": "partitioned"}))


class FactoryTests(TestCase):
    def test_memory(self) -> None:
        clock = task.Clock()
        service = locationServiceFromConfig(LocationConfig.fromSection({}), clock, clock)
        self.assertEqual(service.name, "location")
        self.assertIsInstance(service.store, MemoryLocationStore)
        self.assertTrue(verifyObject(ILocationStore, service.store))

    def test_partitionedInline(self) -> None:
        clock = task.Clock()
        service = locationServiceFromConfig(LocationConfig.fromSection(INLINE), clock, clock)
        store = service.store
        self.assertIsInstance(store, PartitionedLocationStore)
        self.assertIsInstance(store.source, StaticMapSource)
        self.assertEqual((store.errorThreshold, store.healthInterval), (4, 2.0))
        self.assertEqual(store.settleDelay, 0.0)
        self.assertTrue(verifyObject(ILocationStore, store))
        self.assertEqual(clock.getDelayedCalls(), [])  # no I/O, no timers before start

    def test_partitionedMap(self) -> None:
        clock = task.Clock()
        config = LocationConfig.fromSection({"backend": "partitioned", "map": u("mapdb", "map"),
                                             "reload_interval": "3"})
        store = locationServiceFromConfig(config, clock, clock).store
        self.assertIsInstance(store.source, DatabaseMapSource)
        self.assertEqual(store.settleDelay, 4.0)
