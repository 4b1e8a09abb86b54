"""
The node answers OPTIONS from sipp over UDP and TCP, and over TLS through
stunnel (Debian's sipp is built without TLS; stunnel verifies the node's
certificate against the test CA).
"""

from __future__ import annotations

import tempfile

from twisted.internet import defer
from twisted.trial import unittest

from tests.certs import TestCA
from tests.nodes import listenerPort, startNode
from tests.siptools import Stunnel, runSipp, toolMissing


class SippOptionsTests(unittest.TestCase):
    timeout = 120

    if toolMissing("sipp"):
        skip = toolMissing("sipp")

    async def _options(self, transport: str, sippTransport: str) -> None:
        node = await startNode(self, transports=(transport,))
        port = listenerPort(node, transport)
        result = await runSipp("options.xml", f"127.0.0.1:{port}", sippTransport, calls=20, rate=50, keys={"nodeuri": f"sip:127.0.0.1:{port}"})
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(node.counters.get("in.request.OPTIONS"), 20)
        self.assertEqual(node.counters.get("out.response.2xx"), 20)

    def test_udp(self) -> defer.Deferred:
        return defer.ensureDeferred(self._options("udp", "u1"))

    def test_tcp(self) -> defer.Deferred:
        return defer.ensureDeferred(self._options("tcp", "t1"))

    def test_tlsThroughStunnel(self) -> defer.Deferred:
        """sipp speaks TCP to stunnel, which verifies the node's certificate."""
        if toolMissing("stunnel4"):
            raise unittest.SkipTest(toolMissing("stunnel4"))

        async def run() -> None:
            directory = tempfile.mkdtemp(prefix="voipgw-tls-")
            ca = TestCA(directory)
            server = ca.issue("node", ("localhost", "127.0.0.1"))
            node = await startNode(self, transports=("tls",), sections={"transport": {
                "tls_certificate": server.certificate, "tls_private_key": server.privateKey}})
            tunnel = Stunnel("127.0.0.1", listenerPort(node, "tls"), ca.path)
            await tunnel.start()
            self.addCleanup(lambda: defer.ensureDeferred(tunnel.stop()))
            result = await runSipp("options.xml", f"127.0.0.1:{tunnel.localPort}", "t1", calls=10, rate=20, keys={"nodeuri": f"sip:127.0.0.1:{listenerPort(node, 'tls')};transport=tls"})
            self.assertEqual(result.exitCode, 0, result.describe())
            self.assertEqual(node.counters.get("in.request.OPTIONS"), 10)
            self.assertEqual(node.counters.get("connections.tls.opened"), 1)

        return defer.ensureDeferred(run())
