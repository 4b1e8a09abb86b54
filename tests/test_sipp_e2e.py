"""
The whole node, end to end, with real sipp peers and nothing wired by hand:
subscribers provisioned with voipgw-admin, the callee registered with
digest authentication, the caller challenged with 407, the call routed to
the callee's registered contact with Record-Route honoured.
"""

from __future__ import annotations

import os
import socket
import tempfile

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests.nodes import listenerPort, startNode
from tests.siptools import SCENARIOS, freePort, provisionSubscribers, runSipp, sippCredentials, toolMissing
from tests.test_sipp_calls import startUAS

DOMAIN = "example.test"
USERS = {"alice": "alice-has-a-long-password", "bob": "bob-has-another-one"}


def authFile(directory: str, username: str, password: str | None = None) -> str:
    return sippCredentials(directory, username, {username: password or USERS[username]})


class EndToEndTests(unittest.TestCase):
    timeout = 120

    if toolMissing("sipp"):
        skip = toolMissing("sipp")

    async def startProvisionedNode(self, transport: str) -> tuple[object, str]:
        directory = tempfile.mkdtemp(prefix="voipgw-e2e-")
        url = provisionSubscribers(directory, DOMAIN, USERS)
        node = await startNode(self, transports=(transport,), sections={
            "node": {"domain": DOMAIN},
            "subscribers": {"master": url},
            # sipp answers digest challenges with MD5 only, and only the first one offered.
            "auth": {"algorithms": "MD5, SHA-256"},
        })
        return node, directory

    async def _call(self, transport: str, sippTransport: str) -> None:
        node, directory = await self.startProvisionedNode(transport)
        port = listenerPort(node, transport)
        target = f"127.0.0.1:{port}"
        bobPort = freePort(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
        registered = await runSipp("register_auth.xml", target, sippTransport, calls=1, localPort=bobPort,
                                   extra=["-inf", authFile(directory, "bob"), "-auth_uri", DOMAIN],
                                   keys={"domain": DOMAIN})
        self.assertEqual(registered.exitCode, 0, registered.describe())
        [binding] = await node.location.store.lookup(f"bob@{DOMAIN}", reactor.seconds())
        self.assertIn(f"127.0.0.1:{bobPort}", binding.contact)

        callee = startUAS("uas_call.xml", bobPort, sippTransport, calls=3)
        await deferLater(reactor, 0.3, lambda: None)
        caller = await runSipp(os.path.join(SCENARIOS, "uac_auth_call.xml"), target, sippTransport, calls=3, rate=5,
                               extra=["-inf", authFile(directory, "alice"), "-s", "bob", "-auth_uri", f"bob@{DOMAIN}"],
                               keys={"domain": DOMAIN})
        calleeResult = await callee
        self.assertEqual(caller.exitCode, 0, "caller:\n" + caller.describe() + "\ncallee:\n" + calleeResult.describe())
        self.assertEqual(calleeResult.exitCode, 0, calleeResult.describe())
        self.assertEqual(node.counters.get("in.request.INVITE"), 6)
        self.assertEqual(node.counters.get("in.request.BYE"), 3)

    async def test_registeredCalleeOverUDP(self) -> None:
        await self._call("udp", "u1")

    async def test_registeredCalleeOverTCP(self) -> None:
        await self._call("tcp", "t1")

    async def test_wrongCallerPasswordNeverConnects(self) -> None:
        """A caller with a wrong password is challenged again, never routed."""
        node, directory = await self.startProvisionedNode("udp")
        target = f"127.0.0.1:{listenerPort(node, 'udp')}"
        await node.location.store.save(__import__("voipgw.location", fromlist=["Binding"]).Binding(
            f"bob@{DOMAIN}", f"sip:bob@127.0.0.1:{freePort()}", reactor.seconds() + 600))
        caller = await runSipp(os.path.join(SCENARIOS, "uac_auth_call.xml"), target, "u1", calls=1,
                               extra=["-inf", authFile(directory, "alice", "wrong-password"), "-s", "bob",
                                      "-auth_uri", f"bob@{DOMAIN}"],
                               keys={"domain": DOMAIN}, timeout=20)
        self.assertNotEqual(caller.exitCode, 0)
        self.assertEqual(node.counters.get("out.request.INVITE"), 0)
