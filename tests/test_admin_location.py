"""Tests for C{voipgw-admin location ...} on real MariaDB servers."""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

from twisted.trial.unittest import TestCase

from tests import test_location_support as support
from tests.test_location_partitioned import Platform, PlatformMixin, aorsIn
from voipgw.admin.cli import main
from voipgw.location.partitioning import CopyStatus, partitionOf
from voipgw.location.testing import makeBinding


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


class EmptyMapPlatform(Platform):
    """Databases only; the map is built through the admin commands."""

    def writeMap(self) -> None:
        pass


class BuildMapTests(TestCase):
    def setUp(self) -> None:
        reason = support.skipReason()
        if reason:
            from twisted.trial.unittest import SkipTest
            raise SkipTest(reason)
        self.platform = EmptyMapPlatform()
        self.addCleanup(self.platform.cleanup)

    def test_initAddPartitions(self) -> None:
        u, m = self.platform.urls, self.platform.mapURL
        self.assertEqual(run("location", "init", "--map", m, "--partitions", "2")[0], 0)
        # a copy in the same risk group as its partner is refused
        status, out, err = run("location", "add", "--map", m, u["A"], "--partition", "0")
        self.assertEqual(status, 0, err)
        status, out, err = run("location", "add", "--map", m, u["B"], "--partition", "0",
                               "--copy", "2")
        self.assertEqual(status, 1)
        self.assertIn("risk group '127.0.0.1'", err)
        for url, part, copy, group in ((u["A"], 0, 1, "rackA"), (u["B"], 0, 2, "rackB"),
                                       (u["C"], 1, 1, "rackA"), (u["D"], 1, 2, "rackB")):
            status, out, err = run("location", "add", "--map", m, url, "--partition", str(part),
                                   "--copy", str(copy), "--risk-group", group)
            self.assertEqual(status, 0, err)
        status, out, err = run("location", "add", "--map", m, u["E"], "--spare",
                               "--risk-group", "rackC")
        self.assertEqual(status, 0, err)
        status, out, err = run("location", "partitions", "--map", m, "--json", "--rows")
        self.assertEqual(status, 0, err)
        snap = json.loads(out)
        self.assertEqual([[c["status"] for c in p["copies"]] for p in snap["partitions"]],
                         [["on", "on"], ["on", "on"]])
        self.assertEqual(snap["partitions"][1]["copies"][1]["riskGroup"], "rackB")
        self.assertEqual(snap["partitions"][0]["copies"][0]["rows"], 0)
        self.assertEqual(len(snap["spares"]), 1)
        status, out, err = run("location", "partitions", "--map", m)
        self.assertIn("partition 1: available", out)
        self.assertIn("spare  copy 0 on", out)

    def test_noMap(self) -> None:
        status, out, err = run("location", "partitions", "--map", self.platform.mapURL)
        self.assertEqual(status, 1)
        self.assertIn("run 'location init'", err)

    def test_unreachableMap(self) -> None:
        status, out, err = run("location", "partitions", "--map", "mysql+mysqldb://root@127.0.0.1:1/x")
        self.assertEqual(status, 1)
        self.assertIn("map database", err)


class OperateTests(PlatformMixin, TestCase):
    async def test_show(self) -> None:
        now = time.time()
        aor = aorsIn(1, 1)[0]
        await self.store.save(makeBinding(aor, 3, now + 600))
        status, out, err = run("location", "show", "--map", self.platform.mapURL, "SIP:" + aor.upper())
        self.assertEqual(status, 0, err)
        self.assertIn(f"{aor}: partition 1, read from copy 1", out)
        self.assertIn("sip:sub", out)
        self.assertIn("expires in 60", out)

    async def test_disableEnableResync(self) -> None:
        u, m = self.platform.urls, self.platform.mapURL
        now = time.time()
        aors = aorsIn(0, 20)
        for aor in aors[:10]:
            await self.store.save(makeBinding(aor, 1, now + 600))
        self.assertEqual(run("location", "disable", "--map", m, u["B"])[0], 0)
        status, out, err = run("location", "disable", "--map", m, u["A"])
        self.assertEqual(status, 1)
        self.assertIn("last live copy of partition 0", err)
        await self.store.reload()
        self.assertEqual(self.store.map.copy(u["B"]).status, CopyStatus.MAINTENANCE)
        for aor in aors[10:]:
            await self.store.save(makeBinding(aor, 1, now + 600))
        await self.store.removeAll(aors[0])
        self.assertEqual(len(self.platform.rows("B")), 10)  # missed the maintenance writes
        self.assertEqual(run("location", "enable", "--map", m, u["B"])[0], 0)
        self.assertEqual(self.platform.sharedMap()[u["B"]].status, CopyStatus.OFF)
        status, out, err = run("location", "resync", "--map", m, "0", "--settle", "0")
        self.assertEqual(status, 0, err)
        self.assertIn("resynchronised", out)
        self.assertEqual(self.platform.sharedMap()[u["B"]].status, CopyStatus.ON)
        self.assertEqual(len(self.platform.rows("B")), 19)
        self.assertEqual(self.platform.rows("A"), self.platform.rows("B"))
        status, out, err = run("location", "resync", "--map", m, "0", "--settle", "0")
        self.assertIn("no copy needs a resync", out)
        self.assertEqual(run("location", "resync", "--map", m, "7")[0], 1)

    async def test_rehash(self) -> None:
        """2 -> 3 partitions: every binding ends up in its partition, none lost."""
        now = time.time()
        saved = [makeBinding(f"re{i}@example.com", i, now + 600) for i in range(240)]
        for b in saved:
            await self.store.save(b)
        a, b_ = self.platform.byName["A"], self.platform.byName["B"]
        new1, new2 = support.newDatabase(a, "p2"), support.newDatabase(b_, "p2")
        self.addCleanup(support.dropDatabase, new1, a)
        self.addCleanup(support.dropDatabase, new2, b_)
        m = self.platform.mapURL
        for url, copy, group in ((new1, "1", "rackA"), (new2, "2", "rackB")):
            status, out, err = run("location", "add", "--map", m, url, "--partition", "2",
                                   "--copy", copy, "--risk-group", group)
            self.assertEqual(status, 0, err)
        # staged partition 2 is ignored by the nodes until the rehash
        await self.store.reload()
        self.assertEqual(self.store.map.partitions, 2)
        status, out, err = run("location", "rehash", "--map", m, "--partitions", "3", "--settle", "0")
        self.assertEqual(status, 0, err)
        await self.store.reload()
        self.assertEqual(self.store.map.partitions, 3)
        for b in saved:
            self.assertEqual(await self.store.lookup(b.aor, now), [b])
        self.assertEqual(await self.store.count(), 240)
        expected = {p: {b.aor for b in saved if partitionOf(b.aor, 3) == p} for p in range(3)}
        self.assertTrue(60 <= len(expected[2]) <= 100, len(expected[2]))
        self.assertEqual({r[0] for r in support.rows(a, new1)}, expected[2])
        self.assertEqual({r[0] for r in support.rows(b_, new2)}, expected[2])
        self.assertEqual({r[0] for r in self.platform.rows("A")}, expected[0])
        self.assertEqual({r[0] for r in self.platform.rows("D")}, expected[1])
        status, out, err = run("location", "partitions", "--map", m, "--json")
        self.assertEqual(len(json.loads(out)["partitions"]), 3)
