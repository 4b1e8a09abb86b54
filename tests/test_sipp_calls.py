"""
End to end: sipp UAC -> voipgw (the routing service in a real node in the
trial reactor) -> sipp UAS, over UDP and TCP: complete calls with
Record-Route honoured, CANCEL, no answer (timer C), and a dispatcher set
with a dead member.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any, Optional

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests.nodes import freeSIPPort, listenerPort
from tests.siptools import SCENARIOS, ToolResult, freePort, runSipp, runTool, toolMissing
from voipgw.config import parseConfig
from voipgw.location.binding import Binding
from voipgw.node import buildNode


async def startRoutingNode(testCase: Any, transports: tuple[str, ...], routing: Optional[dict[str, str]] = None,
                           timers: Optional[dict[str, str]] = None) -> Any:
    """
    A node on free loopback ports built from config, with its own routing
    service and memory location store.  The sipp callers on 127.0.0.0/8 are
    trusted (no 407): these tests are about routing, not caller auth.
    """
    port = freeSIPPort()
    routingSection = {"trusted": "127.0.0.0/8", **(routing or {})}
    sections = {
        "node": {"listen": ", ".join(f"{t}:127.0.0.1:{port}" for t in transports), "domain": "example.com, gw.example.com",
                 "data_dir": tempfile.mkdtemp(prefix="voipgw-node-")},
        "timers": dict(timers or {}),
        "routing": routingSection,
    }
    node = buildNode(parseConfig(sections), reactor)
    await node.startService()
    testCase.addCleanup(node.stopService)
    testCase.addCleanup(lambda: shutil.rmtree(sections["node"]["data_dir"], ignore_errors=True))
    node.store = node.location.store
    node.routing = node.getServiceNamed("routing")
    return node


def startUAS(scenario: str, port: int, transport: str, calls: int, timeout: float = 60.0) -> "defer.Deferred[ToolResult]":
    """A sipp UAS in the background; its Deferred fires when it exits."""
    workdir = tempfile.mkdtemp(prefix="voipgw-sipp-uas-")
    argv = [shutil.which("sipp") or "sipp", "-sf", os.path.join(SCENARIOS, scenario), "-i", "127.0.0.1", "-p", str(port),
            "-t", transport, "-m", str(calls), "-nostdin", "-trace_err", "-timeout", f"{int(timeout) - 5}s",
            "-timeout_error", "-max_recv_loops", "1000"]
    d = defer.ensureDeferred(runTool(argv, cwd=workdir, timeout=timeout))

    def cleanup(result: ToolResult) -> ToolResult:
        shutil.rmtree(workdir, ignore_errors=True)
        return result

    return d.addBoth(cleanup)


class SippCallTests(unittest.TestCase):
    timeout = 120

    if toolMissing("sipp"):
        skip = toolMissing("sipp")

    async def _calls(self, transport: str, sippTransport: str, calls: int = 5, uas: str = "uas_call.xml",
                     uac: str = "uac_call.xml", routing: Optional[dict[str, str]] = None,
                     timers: Optional[dict[str, str]] = None) -> Any:
        node = await startRoutingNode(self, (transport,), routing, timers)
        nodePort = listenerPort(node, transport)
        uasPort = freePort(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
        suffix = "" if transport == "udp" else f";transport={transport}"
        await node.store.save(Binding("bob@example.com", f"sip:bob@127.0.0.1:{uasPort}{suffix}", reactor.seconds() + 3600))
        server = startUAS(uas, uasPort, sippTransport, calls)
        await deferLater(reactor, 0.3, lambda: None)
        result = await runSipp(uac, f"127.0.0.1:{nodePort}", sippTransport, calls=calls, rate=10,
                               keys={"domain": "example.com"}, extra=["-s", "bob"])
        uasResult = await server
        self.assertEqual(result.exitCode, 0, "UAC:\n" + result.describe() + "\nUAS:\n" + uasResult.describe())
        self.assertEqual(uasResult.exitCode, 0, uasResult.describe())
        await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(len(node.routing.contexts), 0)
        return node

    def test_callsOverUDP(self) -> defer.Deferred:
        """INVITE/180/200/ACK/BYE through the record-routing proxy over UDP."""
        async def run() -> None:
            node = await self._calls("udp", "u1", calls=10)
            self.assertEqual(node.counters.get("routing.forwarded_2xx"), 20)  # INVITE and BYE
            self.assertEqual(node.counters.get("routing.ack_forwarded"), 10)
        return defer.ensureDeferred(run())

    def test_callsOverTCP(self) -> defer.Deferred:
        async def run() -> None:
            node = await self._calls("tcp", "t1", calls=5)
            self.assertEqual(node.counters.get("routing.ack_forwarded"), 5)
        return defer.ensureDeferred(run())

    def test_cancel(self) -> defer.Deferred:
        """CANCEL after 180: 200 for the CANCEL, 487 relayed from the callee."""
        async def run() -> None:
            node = await self._calls("udp", "u1", calls=3, uas="uas_cancel.xml", uac="uac_cancel.xml")
            self.assertEqual(node.counters.get("routing.cancelled_by_caller"), 3)
            self.assertEqual(node.counters.get("routing.cancels_sent"), 3)
        return defer.ensureDeferred(run())

    def test_noAnswer(self) -> defer.Deferred:
        """The callee rings forever: timer C cancels it and the caller gets 480."""
        async def run() -> None:
            node = await self._calls("udp", "u1", calls=2, uas="uas_cancel.xml", uac="uac_noanswer.xml",
                                     routing={"timer_c": "2"})
            self.assertEqual(node.counters.get("routing.timer_c"), 2)
            self.assertEqual(node.counters.get("routing.final.4xx"), 2)
        return defer.ensureDeferred(run())

    def test_dispatcherSetWithDeadMember(self) -> defer.Deferred:
        """Half the members are dead: every call still completes (failover on timeout)."""
        async def run() -> None:
            dead = freePort(socket.SOCK_DGRAM)
            uasPort = freePort(socket.SOCK_DGRAM)
            node = await startRoutingNode(self, ("udp",), {
                "dispatcher.gw": f"sip:127.0.0.1:{dead}, sip:127.0.0.1:{uasPort}",
                "dispatcher_route.gw": "gw.example.com",
                "probe_interval": "0",
            }, timers={"t1": "0.05"})
            nodePort = listenerPort(node, "udp")
            calls = 6
            server = startUAS("uas_call.xml", uasPort, "u1", calls)
            await deferLater(reactor, 0.3, lambda: None)
            result = await runSipp("uac_call.xml", f"127.0.0.1:{nodePort}", "u1", calls=calls, rate=10,
                                   keys={"domain": "gw.example.com"}, extra=["-s", "carrier"])
            uasResult = await server
            self.assertEqual(result.exitCode, 0, result.describe() + "\nUAS:\n" + uasResult.describe())
            self.assertEqual(uasResult.exitCode, 0, uasResult.describe())
            self.assertEqual(node.counters.get("routing.failover"), calls // 2)
        return defer.ensureDeferred(run())
