"""
Every RFC 4475 and RFC 5118 torture message sent to a whole node (built
from config: registrar, routing, stores): the node answers as the RFCs say,
never crashes, and never forwards anything (nothing here may relay).

Sends are captured instead of leaving the machine: the messages' Vias name
hosts that are not ours.
"""

from __future__ import annotations

import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests.test_sip_torture import TORTURE_ANSWERABLE, TORTURE_EXPECTATIONS, tortureBytes
from voipgw.config import parseConfig
from voipgw.node import buildNode
from voipgw.sip.message import Request, Response
from voipgw.transport.address import Address

SOURCE = Address("udp", "192.0.2.99", 5060)
MALFORMED = (400, 505, 513)


class NoDNS:
    """Fails any lookup: no torture message may make the node resolve (relay) anything."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"DNS lookup attempted ({name})")


class NodeTortureTests(unittest.TestCase):
    timeout = 120

    async def test_everyMessage(self) -> None:
        config = parseConfig({"node": {
            "listen": "udp:127.0.0.1:0", "data_dir": tempfile.mkdtemp(prefix="voipgw-torture-"),
            "domain": "example.com, example.net, atlanta.example.com, biloxi.example.com",
        }})
        node = buildNode(config, reactor)
        sent: list[tuple[Any, Address]] = []
        node.transports.send = lambda message, destination, onError=None: sent.append((message, destination))  # type: ignore[method-assign]
        node.getServiceNamed("routing").resolver = NoDNS()
        await node.startService()
        self.addCleanup(node.stopService)
        verdicts: dict[str, list[int]] = {}
        for name, (verdict, status) in sorted(TORTURE_EXPECTATIONS.items()):
            # The RFC's files reuse branches (novelsc and unkscm share one), which
            # §17.2.3 rightly matches as a retransmission: each file here is
            # meant as a new request, so end the previous transactions first.
            for transaction in list(node.transactions.server.values()):
                transaction.terminate()
            del sent[:]
            data = tortureBytes(name)
            node.transports.bytesReceived(data, SOURCE, None, datagram=True)

            def ours(message: Any) -> bool:
                # Earlier INVITEs' final responses are retransmitted (timer G, no ACK comes).
                return isinstance(message, Response) and message.callId.encode() in data

            # Wait for the answers (authentication and location run off the reactor thread).
            for _ in range(40):
                await deferLater(reactor, 0.01, lambda: None)
                if any(ours(m) and m.code >= 200 for m, _ in sent):
                    break
            finals = [m.code for m, _ in sent if ours(m) and m.code >= 200]
            forwarded = [m.method for m, _ in sent if isinstance(m, Request)]
            verdicts[name] = finals
            self.assertEqual(forwarded, [], f"{name}: the node forwarded {forwarded}")
            if verdict == "reject":
                expected = [status] if name in TORTURE_ANSWERABLE else []
                self.assertEqual(finals, expected, name)
            elif verdict == "refuse":
                # A registrar challenges before it looks at the bindings (RFC 3261 §10.3 step 4).
                allowed = {status, 401} if tortureBytes(name).startswith(b"REGISTER") else {status}
                self.assertTrue(finals and finals[0] in allowed, f"{name}: {finals}, expected {allowed}")
            else:
                self.assertFalse(set(finals) & set(MALFORMED), f"{name} is well-formed but got {finals}")
                self.assertNotIn(500, finals, f"{name}: internal error")
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(len(verdicts), len(TORTURE_EXPECTATIONS))
