"""Tests for L{voipgw.location.partitioning}: pure code, no reactor, no database."""

from __future__ import annotations

import json
import subprocess
import sys

from hypothesis import given, strategies as st
from twisted.trial.unittest import TestCase

from voipgw.location.partitioning import (
    CopyState,
    CopyStatus,
    MapError,
    PartitionMap,
    aorHash,
    buildMap,
    jumpHash,
    partitionOf,
)

AORS = [f"user{i}@example.com" for i in range(20000)]


def url(n: int, db: str = "loc") -> str:
    return f"mysql+mysqldb://voipgw@db{n}.example.net:3306/{db}"


class HashTests(TestCase):
    def test_knownValues(self) -> None:
        """The hash is specified, not an accident of this interpreter."""
        # BLAKE2b with an 8-byte digest, big-endian (hashlib / RFC 7693)
        self.assertEqual(aorHash(""), 0xE4A6A0577479B2B4)
        self.assertEqual(aorHash("alice@example.com"), 0xFB816158887AD00A)
        # the reference vectors of the Go implementation (github.com/dgryski/go-jump)
        self.assertEqual(jumpHash(1, 1), 0)
        self.assertEqual(jumpHash(42, 57), 43)
        self.assertEqual(jumpHash(0xDEAD10CC, 1), 0)
        self.assertEqual(jumpHash(0xDEAD10CC, 666), 361)
        self.assertEqual(jumpHash(256, 1024), 520)

    def test_stableAcrossProcesses(self) -> None:
        """A fresh interpreter with another hash seed computes the same partitions."""
        sample = AORS[:2000]
        code = (
            "import json,sys\n"
            "from voipgw.location.partitioning import partitionOf\n"
            "aors=json.load(sys.stdin)\n"
            "print(json.dumps([partitionOf(a, 7) for a in aors]))\n"
        )
        results = []
        for seed in ("1", "2"):
            out = subprocess.run(
                [sys.executable, "-c", code], input=json.dumps(sample), capture_output=True,
                text=True, check=True, env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin",
                                            "PYTHONPATH": ":".join(sys.path)},
            )
            results.append(json.loads(out.stdout))
        here = [partitionOf(a, 7) for a in sample]
        self.assertEqual(results[0], here)
        self.assertEqual(results[1], here)

    def test_spread(self) -> None:
        counts = [0] * 8
        for a in AORS:
            counts[partitionOf(a, 8)] += 1
        for c in counts:
            self.assertTrue(abs(c - 2500) < 250, counts)

    def test_movementOnGrowth(self) -> None:
        """Growing n -> n+1 moves ~1/(n+1) of AORs, and only to the new partition."""
        for n in (1, 2, 4, 7, 16):
            moved = 0
            for a in AORS:
                before, after = partitionOf(a, n), partitionOf(a, n + 1)
                if before != after:
                    moved += 1
                    self.assertEqual(after, n)
            fraction = moved / len(AORS)
            self.assertTrue(abs(fraction - 1 / (n + 1)) < 0.02, (n, fraction))

    @given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=1, max_value=500))
    def test_jumpRange(self, key: int, buckets: int) -> None:
        b = jumpHash(key, buckets)
        self.assertTrue(0 <= b < buckets)
        self.assertIn(jumpHash(key, buckets + 1), (b, buckets))

    def test_badBuckets(self) -> None:
        self.assertRaises(ValueError, jumpHash, 1, 0)


def twoByTwo(spares: int = 1) -> PartitionMap:
    groups = {url(1): "rackA", url(2): "rackB", url(3): "rackA", url(4): "rackB",
              url(5): "rackC", url(6): "rackA"}
    return buildMap(2, [(0, [url(1), url(2)]), (1, [url(3), url(4)])],
                    spares=[url(5), url(6)][:spares], riskGroups=groups)


class ValidationTests(TestCase):
    def test_valid(self) -> None:
        m = twoByTwo()
        self.assertEqual([c.url for c in m.copiesOf(0)], [url(1), url(2)])
        self.assertEqual([c.url for c in m.spares()], [url(5)])

    def test_unknownPartition(self) -> None:
        e = self.assertRaises(MapError, buildMap, 2, [(0, [url(1), url(2)]), (2, [url(3), url(4)])],
                              riskGroups={url(1): "a", url(2): "b"})
        self.assertIn("unknown partition number 2", str(e))

    def test_missingPartition(self) -> None:
        e = self.assertRaises(MapError, buildMap, 2, [(0, [url(1), url(2)])],
                              riskGroups={url(1): "a", url(2): "b"})
        self.assertIn("partition 1 has no copy", str(e))

    def test_sameServer(self) -> None:
        e = self.assertRaises(MapError, buildMap, 1, [(0, [url(1, "a"), url(1, "b")])],
                              riskGroups={url(1, "a"): "x", url(1, "b"): "y"})
        self.assertIn("both copies of partition 0 are on server db1.example.net:3306", str(e))

    def test_sameURLTwice(self) -> None:
        e = self.assertRaises(MapError, buildMap, 2, [(0, [url(1), url(2)]), (1, [url(1), url(3)])])
        self.assertIn("listed twice", str(e))

    def test_sameRiskGroup(self) -> None:
        e = self.assertRaises(MapError, buildMap, 1, [(0, [url(1), url(2)])],
                              riskGroups={url(1): "rack1", url(2): "rack1"})
        self.assertIn("risk group 'rack1'", str(e))

    def test_defaultRiskGroupIsHost(self) -> None:
        a = "mysql+mysqldb://u@10.0.0.1:3306/a"
        b = "mysql+mysqldb://u@10.0.0.1:3307/a"
        e = self.assertRaises(MapError, buildMap, 1, [(0, [a, b])])
        self.assertIn("risk group '10.0.0.1'", str(e))

    def test_twoPartitionsOnOneServerAllowed(self) -> None:
        """Different databases of one server may hold different partitions."""
        m = buildMap(2, [(0, [url(1, "p0"), url(2, "p0")]), (1, [url(2, "p1"), url(1, "p1")])])
        self.assertEqual(m.partitions, 2)


class FailoverStateTests(TestCase):
    def test_readFirstHealthy(self) -> None:
        m = twoByTwo()
        self.assertEqual([c.url for c in m.readCopies(0)], [url(1), url(2)])
        self.assertIsNone(m.recordError(url(1), 10.0, threshold=3))
        self.assertIsNone(m.recordError(url(1), 11.0, threshold=3))
        self.assertEqual(m.copy(url(1)).errors, 2)
        m.recordSuccess(url(1))
        self.assertEqual(m.copy(url(1)).errors, 0)
        for t in (12.0, 13.0):
            self.assertIsNone(m.recordError(url(1), t, threshold=3))
        d = m.recordError(url(1), 14.0, threshold=3)
        assert d is not None
        self.assertEqual((d.action, d.url, d.partition), ("off", url(1), 0))
        self.assertEqual(m.copy(url(1)).failoverTime, 14.0)
        self.assertEqual([c.url for c in m.readCopies(0)], [url(2)])
        self.assertEqual([c.url for c in m.writeCopies(0)], [url(2)])
        self.assertEqual([c.url for c in m.readCopies(1)], [url(3), url(4)])

    def test_fatalWriteError(self) -> None:
        m = twoByTwo()
        d = m.recordError(url(2), 5.0, threshold=3, fatal=True)
        assert d is not None
        self.assertEqual(d.action, "off")
        self.assertIsNone(m.recordError(url(2), 6.0, threshold=3, fatal=True))

    def test_bothDown(self) -> None:
        m = twoByTwo()
        m.recordError(url(1), 1.0, 1)
        m.recordError(url(2), 2.0, 1)
        self.assertFalse(m.available(0))
        self.assertTrue(m.available(1))
        # first to answer serves without resync: there is no peer to copy from
        d = m.returned(url(1), 3.0)
        assert d is not None
        self.assertEqual(d.action, "on")
        d = m.returned(url(2), 4.0)
        assert d is not None
        self.assertEqual((d.action, d.source), ("resync", url(1)))
        self.assertEqual(m.copy(url(2)).status, CopyStatus.SYNCING)
        self.assertEqual([c.url for c in m.readCopies(0)], [url(1)])
        self.assertEqual([c.url for c in m.writeCopies(0)], [url(1), url(2)])

    def test_maintenanceIgnored(self) -> None:
        m = twoByTwo()
        m.copy(url(1)).status = CopyStatus.MAINTENANCE
        self.assertEqual([c.url for c in m.writeCopies(0)], [url(2)])
        self.assertIsNone(m.recordError(url(1), 1.0, 1))
        self.assertIsNone(m.returned(url(1), 1.0))

    def test_spareChoiceRespectsRiskGroup(self) -> None:
        # url(6) is in rackA like url(1): it may replace url(1) only if url(1)
        # is the failed one (then only rackB survives) -- but not url(2).
        m = twoByTwo(spares=2)
        m.copy(url(5)).status = CopyStatus.OFF  # rackC spare unavailable
        m.recordError(url(2), 100.0, 1)
        self.assertIsNone(m.chooseSpare(0))
        self.assertEqual(m.replacements(200.0, after=10), [])
        m2 = twoByTwo(spares=2)
        m2.copy(url(5)).status = CopyStatus.OFF
        m2.recordError(url(1), 100.0, 1)
        spare = m2.chooseSpare(0)
        assert spare is not None
        self.assertEqual(spare.url, url(6))

    def test_replacementsAndPromote(self) -> None:
        m = twoByTwo()
        m.recordError(url(1), 100.0, 1)
        self.assertEqual(m.replacements(105.0, after=10), [])
        [d] = m.replacements(110.0, after=10)
        self.assertEqual((d.action, d.url, d.spare, d.source, d.partition), ("promote", url(1), url(5), url(2), 0))
        m.promote(url(1), url(5), 110.0)
        self.assertEqual([(c.url, c.copyNo, c.status) for c in m.copiesOf(0)],
                         [(url(5), 1, CopyStatus.SYNCING), (url(2), 2, CopyStatus.ON)])
        self.assertEqual([c.url for c in m.spares()], [url(1)])
        self.assertEqual(m.copy(url(1)).status, CopyStatus.OFF)
        # the old server returns as an available spare
        d2 = m.returned(url(1), 120.0)
        assert d2 is not None
        self.assertEqual(d2.action, "spare-on")
        self.assertEqual(m.copy(url(1)).status, CopyStatus.ON)

    def test_noPromotionWithoutLivePeer(self) -> None:
        m = twoByTwo()
        m.recordError(url(1), 100.0, 1)
        m.recordError(url(2), 100.0, 1)
        self.assertEqual(m.replacements(1000.0, after=10), [])

    def test_oneSparePerFailure(self) -> None:
        m = twoByTwo()
        m.recordError(url(1), 100.0, 1)
        m.recordError(url(4), 100.0, 1)
        self.assertEqual(len(m.replacements(1000.0, after=0)), 1)

    def test_snapshot(self) -> None:
        m = twoByTwo()
        m.recordError(url(3), 7.0, 1)
        snap = m.snapshot()
        p1 = snap["partitions"][1]  # type: ignore[index]
        self.assertEqual(p1["copies"][0]["status"], "off")
        self.assertEqual(p1["copies"][0]["failoverTime"], 7.0)
        self.assertEqual(p1["copies"][0]["riskGroup"], "rackA")
        self.assertEqual(snap["spares"][0]["url"], url(5))  # type: ignore[index]
        json.dumps(snap)

    def test_copyStateDefaults(self) -> None:
        c = CopyState(url(9), 0, 1, status="maintenance")  # type: ignore[arg-type]
        self.assertIs(c.status, CopyStatus.MAINTENANCE)
        self.assertEqual(c.riskGroup, "db9.example.net")
        self.assertFalse(c.readable)
