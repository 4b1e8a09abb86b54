"""
Dispatcher sets: selection algorithms (pure), OPTIONS probing on
task.Clock, failover of forwarded requests, reload at runtime.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter

from twisted.internet import defer
from twisted.trial import unittest

from voipgw.config import ConfigError
from voipgw.routing.config import DestinationSpec, RoutingConfig
from voipgw.routing.dispatcher import DispatcherSet, DispatcherSets, dispatcherTable, readDispatcherFile
from voipgw.sip.message import parseMessage
from voipgw.testing.routing import RoutingHarness
from voipgw.transport.address import Address


def makeSet(algorithm: str, *specs: str) -> DispatcherSet:
    return DispatcherSet.fromSpecs("s", [DestinationSpec.parse(s, "test") for s in specs], algorithm)


def request(callId: str = "c1@x", user: str = "alice") -> object:
    return parseMessage((f"INVITE sip:x@gw SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n"
                         f"From: <sip:{user}@example.com>;tag=1\r\nTo: <sip:x@gw>\r\nCall-ID: {callId}\r\n"
                         "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())


class SelectionTests(unittest.TestCase):
    def test_roundRobin(self) -> None:
        s = makeSet("round_robin", "sip:10.0.0.1", "sip:10.0.0.2", "sip:10.0.0.3")
        firsts = [s.select()[0].uri.host for _ in range(6)]
        self.assertEqual(firsts, ["10.0.0.1", "10.0.0.2", "10.0.0.3"] * 2)
        self.assertEqual([m.uri.host for m in s.select()], ["10.0.0.1", "10.0.0.2", "10.0.0.3"])

    def test_weighted(self) -> None:
        s = makeSet("weighted", "sip:10.0.0.1;weight=3", "sip:10.0.0.2;weight=1", "sip:10.0.0.3;weight=0")
        counts = Counter(s.select()[0].uri.host for _ in range(400))
        self.assertEqual(counts, {"10.0.0.1": 300, "10.0.0.2": 100})

    def test_hashCallIdSticky(self) -> None:
        s = makeSet("hash_callid", "sip:10.0.0.1", "sip:10.0.0.2", "sip:10.0.0.3")
        chosen = {s.select(request(f"call{i}"))[0].uri.host for i in range(3) for _ in range(5)}
        for i in range(20):
            picks = {s.select(request(f"call{i}"))[0].key for _ in range(5)}
            self.assertEqual(len(picks), 1)
        spread = Counter(s.select(request(f"call{i}"))[0].uri.host for i in range(300))
        self.assertEqual(len(spread), 3)
        self.assertTrue(chosen)

    def test_hashMovesOnlyCallsOfFailedMember(self) -> None:
        s = makeSet("hash_callid", "sip:10.0.0.1", "sip:10.0.0.2", "sip:10.0.0.3")
        before = {i: s.select(request(f"call{i}"))[0].uri.host for i in range(200)}
        s.members[1].up = False
        after = {i: s.select(request(f"call{i}"))[0].uri.host for i in range(200)}
        for i in range(200):
            if before[i] != "10.0.0.2":
                self.assertEqual(before[i], after[i])
            else:
                self.assertNotEqual(after[i], "10.0.0.2")

    def test_hashFromUser(self) -> None:
        s = makeSet("hash_from", "sip:10.0.0.1", "sip:10.0.0.2", "sip:10.0.0.3")
        picks = {s.select(request(f"call{i}", "alice"))[0].key for i in range(30)}
        self.assertEqual(len(picks), 1)

    def test_priority(self) -> None:
        s = makeSet("priority", "sip:10.0.0.1;priority=5", "sip:10.0.0.2;priority=1", "sip:10.0.0.3;priority=9")
        self.assertEqual([m.uri.host for m in s.select()], ["10.0.0.2", "10.0.0.1", "10.0.0.3"])
        s.members[1].up = False
        self.assertEqual(s.select()[0].uri.host, "10.0.0.1")

    def test_noLiveMember(self) -> None:
        s = makeSet("round_robin", "sip:10.0.0.1")
        s.members[0].up = False
        self.assertEqual(s.select(), [])


class ConfigTests(unittest.TestCase):
    def test_parse(self) -> None:
        config = RoutingConfig.fromSection({
            "dispatcher.gw": "sip:10.0.0.1:5060;weight=2;priority=1, sip:10.0.0.2;transport=tcp",
            "dispatcher_algorithm.gw": "weighted", "dispatcher_route.gw": "GW.example.com",
            "probe_interval": "5", "probe_failures": "2", "probe_successes": "3", "failover_codes": "503, 486",
        })
        self.assertEqual(config.dispatcherSets["gw"], [DestinationSpec("sip:10.0.0.1:5060", 2, 1),
                                                       DestinationSpec("sip:10.0.0.2;transport=tcp", 1, 0)])
        self.assertEqual(config.dispatcherAlgorithms, {"gw": "weighted"})
        self.assertEqual(config.dispatcherRoutes, {"gw": ["gw.example.com"]})
        self.assertEqual(config.failoverCodes, frozenset({503, 486}))
        self.assertEqual((config.probeInterval, config.probeFailures, config.probeSuccesses), (5.0, 2, 3))

    def test_errors(self) -> None:
        for section, message in [
            ({"dispatcher.gw": "http://x"}, "not a sip"),
            ({"dispatcher.gw": "sip:10.0.0.1;weight=x"}, "weight"),
            ({"dispatcher.gw": "sip:10.0.0.1", "dispatcher_algorithm.gw": "random"}, "unknown algorithm"),
            ({"dispatcher_algorithm.nope": "priority"}, "no dispatcher set named 'nope'"),
            ({"failover_codes": "200"}, "failover_codes"),
            ({"probe_failures": "0"}, "probe_failures"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                RoutingConfig.fromSection(section)
            self.assertIn(message, str(caught.exception))


class ProbingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.h = RoutingHarness(section={
            "dispatcher.gw": "sip:10.0.0.1:5060, sip:10.0.0.2:5060",
            "dispatcher_route.gw": "gw.example.com",
            "probe_interval": "10", "probe_timeout": "2", "probe_failures": "2", "probe_successes": "2",
        })
        self.addCleanup(self.h.stop)
        self.sets = self.h.service.dispatcherSets

    def probes(self, host: str) -> list:
        return [s for s in self.h.requests("OPTIONS") if s.destination.host == host]

    def test_probesAtInterval(self) -> None:
        self.h.advance(0)
        self.assertEqual(len(self.probes("10.0.0.1")), 1)
        self.h.answer(self.probes("10.0.0.1")[0], 200)
        self.h.answer(self.probes("10.0.0.2")[0], 404)  # any answer proves it alive
        self.h.advance(10)
        self.assertEqual(len(self.probes("10.0.0.1")), 2)
        self.assertEqual([m.up for m in self.sets.sets["gw"].members], [True, True])

    def test_downAfterFailuresUpAfterSuccesses(self) -> None:
        member = self.sets.sets["gw"].members[0]
        self.h.advance(0)
        self.h.answer(self.probes("10.0.0.2")[-1], 200)
        self.h.advance(2)  # probe timeout
        self.assertTrue(member.up)
        self.h.advance(8)
        self.h.answer(self.probes("10.0.0.2")[-1], 200)
        self.h.advance(2)
        self.assertFalse(member.up)
        self.assertEqual(self.h.counters.get("dispatcher.member_down"), 1)
        # no request goes to it now
        self.h.receive(self.h.invite("sip:x@gw.example.com", fromURI="sip:a@gw.example.com"))
        self.assertEqual(self.h.lastRequest("INVITE").destination.host, "10.0.0.2")
        self.h.advance(8)
        self.h.answer(self.probes("10.0.0.1")[-1], 200)
        self.assertFalse(member.up)
        self.h.advance(10)
        self.h.answer(self.probes("10.0.0.1")[-1], 200)
        self.assertTrue(member.up)

    def test_overloadedAnswerIsFailure(self) -> None:
        member = self.sets.sets["gw"].members[0]
        for _ in range(2):
            self.h.advance(0)
            self.h.answer(self.probes("10.0.0.1")[-1], 503)
            self.h.advance(10)
        self.assertFalse(member.up)

    def test_noTransactionLeftByTimedOutProbes(self) -> None:
        self.h.stop()
        self.h.transactions.startService()
        self.h.service.startService()
        self.h.advance(0)
        self.h.advance(2)
        self.assertEqual(self.h.transactions.client, {})


class FailoverTests(unittest.TestCase):
    def setUp(self) -> None:
        self.h = RoutingHarness(section={
            "dispatcher.gw": "sip:10.0.0.1:5060;priority=1, sip:10.0.0.2:5060;priority=2",
            "dispatcher_algorithm.gw": "priority", "dispatcher_route.gw": "gw.example.com",
            "probe_interval": "0", "failover_codes": "503",
        })
        self.addCleanup(self.h.stop)

    def test_failoverOnCode(self) -> None:
        self.h.receive(self.h.invite("sip:x@gw.example.com"))
        first = self.h.lastRequest("INVITE")
        self.assertEqual(first.destination, Address("udp", "10.0.0.1", 5060))
        self.assertEqual(str(first.message.requestURI), "sip:x@gw.example.com")  # type: ignore[union-attr]
        self.h.answer(first, 503)
        second = self.h.lastRequest("INVITE")
        self.assertEqual(second.destination, Address("udp", "10.0.0.2", 5060))
        self.h.answer(second, 200)
        self.assertEqual([s.message.code for s in self.h.finalResponses()], [200])

    def test_noFailoverOnOtherCodes(self) -> None:
        self.h.receive(self.h.invite("sip:x@gw.example.com"))
        self.h.answer(self.h.lastRequest("INVITE"), 486)
        self.assertEqual(len(self.h.requests("INVITE")), 1)
        self.assertEqual({s.message.code for s in self.h.finalResponses()}, {486})

    def test_failoverOnTimeout(self) -> None:
        self.h.receive(self.h.request("MESSAGE", "sip:x@gw.example.com"))
        self.h.pump(33, 0.5)
        self.assertEqual(self.h.lastRequest("MESSAGE").destination.host, "10.0.0.2")

    def test_failoverOnUnreachable(self) -> None:
        self.h.transports.failSendsTo(Address("udp", "10.0.0.1", 5060))
        self.h.receive(self.h.invite("sip:x@gw.example.com"))
        self.h.advance(0)
        self.assertEqual(self.h.lastRequest("INVITE").destination.host, "10.0.0.2")

    def test_garbageFromMemberThenFailover(self) -> None:
        """Bytes that do not parse never reach the proxy; the member times out and the next one is tried."""
        self.h.receive(self.h.request("MESSAGE", "sip:x@gw.example.com"))
        with self.assertRaises(Exception):
            self.h.transports.receive(b"SIP/2.0 2000 garbage\r\n\r\n", Address("udp", "10.0.0.1", 5060))
        self.h.pump(33, 0.5)
        self.assertEqual(self.h.lastRequest("MESSAGE").destination.host, "10.0.0.2")
        self.assertEqual(self.h.counters.get("routing.failover"), 1)

    def test_allMembersFail(self) -> None:
        self.h.receive(self.h.invite("sip:x@gw.example.com"))
        self.h.answer(self.h.lastRequest("INVITE"), 503)
        self.h.answer(self.h.lastRequest("INVITE"), 503)
        self.assertEqual({s.message.code for s in self.h.finalResponses()}, {500})


class ReloadTests(unittest.TestCase):
    def test_reloadFromFile(self) -> None:
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "dispatcher.ini")
        with open(path, "w") as f:
            f.write("[dispatcher]\ngw = sip:10.0.0.1, sip:10.0.0.2\n")
        h = RoutingHarness(section={"dispatcher_file": path, "dispatcher_route.gw": "gw.example.com", "probe_interval": "0"})
        self.addCleanup(h.stop)
        sets = h.service.dispatcherSets
        sets.sets["gw"].members[0].up = False
        with open(path, "w") as f:
            f.write("[dispatcher]\ngw = sip:10.0.0.1, sip:10.0.0.3;weight=4\nalgorithm.gw = weighted\n")
        result = self.successResultOf(sets.reload())
        self.assertEqual(result, {"gw": 2})
        members = sets.sets["gw"].members
        self.assertEqual([m.key for m in members], ["sip:10.0.0.1", "sip:10.0.0.3"])
        self.assertFalse(members[0].up)  # kept its health
        self.assertEqual(sets.sets["gw"].algorithm, "weighted")
        h.receive(h.invite("sip:x@gw.example.com"))
        self.assertEqual(h.lastRequest("INVITE").destination.host, "10.0.0.3")

    def test_badFileKeepsOldSets(self) -> None:
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "dispatcher.ini")
        with open(path, "w") as f:
            f.write("[dispatcher]\ngw = sip:10.0.0.1\n")
        config = RoutingConfig.fromSection({"dispatcher_file": path})
        sets = DispatcherSets.fromConfig(config, None, None)
        with open(path, "w") as f:
            f.write("[dispatcher]\ngw = ftp:nope\n")
        self.failureResultOf(sets.reload(), ConfigError)
        self.assertEqual([m.key for m in sets.sets["gw"].members], ["sip:10.0.0.1"])
        with self.assertRaises(ConfigError):
            readDispatcherFile(os.path.join(directory, "missing.ini"), {})

    @defer.inlineCallbacks
    def test_reloadFromDatabaseTable(self):  # type: ignore[no-untyped-def]
        from sqlalchemy import MetaData
        from twisted.internet import reactor

        from voipgw.db.database import Database

        directory = tempfile.mkdtemp()
        database = Database(f"sqlite:///{directory}/d.db", reactor)
        self.addCleanup(database.stop)
        metadata = MetaData()
        table = dispatcherTable(metadata)
        metadata.create_all(database.engine)
        with database.engine.begin() as conn:
            conn.execute(table.insert(), [{"set_name": "pstn", "uri": "sip:10.1.0.1", "weight": 1, "priority": 0}])
        config = RoutingConfig.fromSection({"dispatcher.gw": "sip:10.0.0.1"})
        sets = DispatcherSets.fromConfig(config, None, None, database=database)
        counts = yield sets.reload()
        self.assertEqual(counts, {"gw": 1, "pstn": 1})
        with database.engine.begin() as conn:
            conn.execute(table.insert(), [{"set_name": "pstn", "uri": "sip:10.1.0.2", "weight": 3, "priority": 0}])
        counts = yield sets.reload()
        self.assertEqual(counts, {"gw": 1, "pstn": 2})
        self.assertEqual(sets.sets["pstn"].members[1].weight, 3)
