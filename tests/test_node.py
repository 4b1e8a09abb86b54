"""The node's service tree: ordered asynchronous start, reverse stop, failure handling."""

from __future__ import annotations

import tempfile

from twisted.application.service import Service
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from voipgw.config import parseConfig
from voipgw.node import AsyncMultiService, buildNode


class Recording(Service):
    def __init__(self, name: str, journal: list[str], clock: Clock, delay: float = 0.0, fail: bool = False) -> None:
        self.setName(name)
        self.journal = journal
        self.clock = clock
        self.delay = delay
        self.fail = fail

    def startService(self) -> defer.Deferred:  # type: ignore[override]
        super().startService()
        self.journal.append(f"start {self.name}")
        d: defer.Deferred = defer.Deferred()

        def done() -> None:
            if self.fail:
                d.errback(RuntimeError(f"{self.name} cannot start"))
            else:
                self.journal.append(f"started {self.name}")
                d.callback(None)

        self.clock.callLater(self.delay, done)
        return d

    def stopService(self) -> defer.Deferred:  # type: ignore[override]
        super().stopService()
        self.journal.append(f"stop {self.name}")
        return defer.succeed(None)


class AsyncMultiServiceTests(unittest.TestCase):
    def test_startsInOrderWaitingForEach(self) -> None:
        clock = Clock()
        journal: list[str] = []
        parent = AsyncMultiService()
        for name in ("db", "app", "listener"):
            Recording(name, journal, clock, delay=1.0).setServiceParent(parent)
        d = parent.startService()
        self.assertEqual(journal, ["start db"])
        clock.advance(1)
        self.assertEqual(journal, ["start db", "started db", "start app"])
        clock.advance(1)
        self.assertNoResult(d)
        clock.advance(1)
        self.successResultOf(d)
        self.assertEqual(journal[-1], "started listener")
        journal.clear()
        self.successResultOf(parent.stopService())
        self.assertEqual(journal, ["stop listener", "stop app", "stop db"])

    def test_failedStartStopsTheStartedOnes(self) -> None:
        clock = Clock()
        journal: list[str] = []
        parent = AsyncMultiService()
        Recording("db", journal, clock).setServiceParent(parent)
        Recording("app", journal, clock, fail=True).setServiceParent(parent)
        Recording("listener", journal, clock).setServiceParent(parent)
        d = parent.startService()
        clock.advance(0)
        clock.advance(0)
        self.failureResultOf(d, RuntimeError)
        self.assertEqual(journal, ["start db", "started db", "start app", "stop db"])
        self.assertFalse(parent.running)
        self.flushLoggedErrors(RuntimeError)


class NodeTreeTests(unittest.TestCase):
    def test_listenersStartLastAndStopFirst(self) -> None:
        """Stores start before the transaction layer and the listeners, so no message arrives early."""
        node = buildNode(parseConfig({"node": {"data_dir": tempfile.mkdtemp(), "listen": "udp:127.0.0.1:0"}}), reactor)
        names = [service.name for service in node]
        self.assertEqual(names, ["subscribers", "location", "registrar", "routing", "overload", "transactions", "transports"])

    async def test_startAndStopRealNode(self) -> None:
        node = buildNode(parseConfig({"node": {"data_dir": tempfile.mkdtemp(), "listen": "udp:127.0.0.1:0, tcp:127.0.0.1:0"}}), reactor)
        await node.startService()
        self.assertTrue(all(service.running for service in node))
        self.assertEqual(len(node.transports.listeners), 2)
        await node.stopService()
        self.assertFalse(any(service.running for service in node))
        self.assertEqual(node.transports.listeners, [])


class ApplicationWiringTests(unittest.SynchronousTestCase):
    def test_factoryGetsTheNodeAndOverridesBuiltIns(self) -> None:
        """An application factory is called with the node and takes its methods over the registrar."""
        seen = []

        class Custom:
            methods = {"REGISTER", "MESSAGE"}

            def __init__(self, node: object) -> None:
                seen.append(node)

        node = buildNode(parseConfig({"node": {"data_dir": tempfile.mkdtemp(), "listen": "udp:127.0.0.1:0"}}), reactor,
                         applications=[Custom])
        self.assertEqual(seen, [node])
        self.assertIsInstance(node.dispatcher.applications["REGISTER"], Custom)
        self.assertIs(node.getServiceNamed("registrar").location, node.location.store)
