"""
Issue 5's fault test with real peers: two nodes share a partitioned location
store on four private MariaDB servers (two partitions x two copies, in two
risk groups) and a map database; sipp registers through one node and calls
through the other while one copy of the callee's partition is killed.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests import test_location_support as support
from tests.nodes import listenerPort, startNode
from tests.siptools import SCENARIOS, freePort, provisionSubscribers, runSipp, sippCredentials, toolMissing
from tests.test_sipp_calls import startUAS
from voipgw.admin.cli import main as adminMain
from voipgw.location.partitioning import partitionOf

DOMAIN = "example.test"
PASSWORD = "pw-{}-partitioned-test"


def authLines(directory: str, name: str, users: list[str]) -> str:
    return sippCredentials(directory, name, {user: PASSWORD.format(user) for user in users})


class TwoNodesPartitionFailoverTests(unittest.TestCase):
    timeout = 180

    if toolMissing("sipp"):
        skip = toolMissing("sipp")
    elif support.skipReason():
        skip = support.skipReason()

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="voipgw-partitioned-")
        servers = support.servers(5)
        self.copies = {name: (server, support.newDatabase(server)) for name, server in zip("ABCD", servers[:4])}
        self.mapServer = servers[4]
        self.mapURL = support.newDatabase(self.mapServer, "map")
        for name, (server, url) in self.copies.items():
            self.addCleanup(support.dropDatabase, url, server)
        self.addCleanup(support.dropDatabase, self.mapURL, self.mapServer)
        run = lambda *argv: self.assertEqual(adminMain(list(argv)), 0)  # noqa: E731
        run("location", "init", "--map", self.mapURL, "--partitions", "2")
        for name, partition, copy, group in (("A", 0, 1, "site1"), ("B", 0, 2, "site2"),
                                            ("C", 1, 1, "site1"), ("D", 1, 2, "site2")):
            run("location", "add", "--map", self.mapURL, self.copies[name][1], "--partition", str(partition),
                "--copy", str(copy), "--risk-group", group)
        # Subscribers: ten per partition, plus the callee "bob" in partition 0.
        self.users = {0: [], 1: []}
        n = 0
        while min(len(v) for v in self.users.values()) < 10:
            user = f"user{n:03d}"
            part = partitionOf(f"{user}@{DOMAIN}", 2)
            if len(self.users[part]) < 10:
                self.users[part].append(user)
            n += 1
        self.callee = next(u for u in (f"bob{i}" for i in range(100)) if partitionOf(f"{u}@{DOMAIN}", 2) == 0)
        self.subscribersURL = provisionSubscribers(self.directory, DOMAIN, {
            user: PASSWORD.format(user) for user in self.users[0] + self.users[1] + [self.callee, "alice"]})
        for name, (server, _) in self.copies.items():
            self.addCleanup(support.ensureRunning, server)

    async def startNodes(self) -> list[Any]:
        secret = secrets.token_hex(32)
        nodes = []
        for _ in range(2):
            nodes.append(await startNode(self, transports=("udp",), sections={
                "node": {"domain": DOMAIN},
                "subscribers": {"master": self.subscribersURL},
                "auth": {"algorithms": "MD5, SHA-256", "secret": secret},
                "location": {"backend": "partitioned", "map": self.mapURL, "health_interval": "0.5",
                             "error_threshold": "1", "reload_interval": "0.5", "connect_timeout": "1",
                             "spare_after": "0"},
                "routing": {"trusted": "127.0.0.0/8"},
            }))
        return nodes

    async def test_registerAndCallAcrossNodesWithACopyKilled(self) -> None:
        nodeA, nodeB = await self.startNodes()
        targetA = f"127.0.0.1:{listenerPort(nodeA, 'udp')}"
        targetB = f"127.0.0.1:{listenerPort(nodeB, 'udp')}"
        first = self.users[0][:5] + self.users[1][:5]
        # Interleaved, so partition 0 keeps taking REGISTERs after the kill below.
        second = [u for pair in zip(self.users[0][5:], self.users[1][5:]) for u in pair]

        # 1. Register half the users and the callee through node A.
        result = await runSipp("register_auth.xml", targetA, "u1", calls=len(first), rate=20,
                               extra=["-inf", authLines(self.directory, "first", first), "-auth_uri", DOMAIN],
                               keys={"domain": DOMAIN})
        self.assertEqual(result.exitCode, 0, result.describe())
        calleePort = freePort(socket.SOCK_DGRAM)
        result = await runSipp("register_auth.xml", targetA, "u1", calls=1, localPort=calleePort,
                               extra=["-inf", authLines(self.directory, "callee", [self.callee]), "-auth_uri", DOMAIN],
                               keys={"domain": DOMAIN})
        self.assertEqual(result.exitCode, 0, result.describe())

        # 2. Register the other half through node B while copy A (partition 0, copy 1) is killed.
        server, _ = self.copies["A"]
        killer = deferLater(reactor, 0.3, server.kill)
        result = await runSipp("register_auth.xml", targetB, "u1", calls=len(second), rate=10,
                               extra=["-inf", authLines(self.directory, "second", second), "-auth_uri", DOMAIN],
                               keys={"domain": DOMAIN})
        await killer
        self.assertIsNotNone(server.process.poll(), "copy A was not killed during the run")
        self.assertEqual(result.exitCode, 0, result.describe())

        # 3. Every REGISTER that got a 200 is found, through either node.
        now = reactor.seconds()
        for node in (nodeA, nodeB):
            for user in first + second + [self.callee]:
                found = await node.location.store.lookup(f"{user}@{DOMAIN}", now)
                self.assertEqual(len(found), 1, f"{user} (partition {partitionOf(user + '@' + DOMAIN, 2)})")

        # 4. Calls through node B reach the callee registered through node A, from the surviving copy.
        callee = startUAS("uas_call.xml", calleePort, "u1", calls=3)
        await deferLater(reactor, 0.3, lambda: None)
        caller = await runSipp(os.path.join(SCENARIOS, "uac_call.xml"), targetB, "u1", calls=3, rate=5,
                               keys={"domain": DOMAIN}, extra=["-s", self.callee])
        calleeResult = await callee
        self.assertEqual(caller.exitCode, 0, "caller:\n" + caller.describe() + "\ncallee:\n" + calleeResult.describe())
        self.assertEqual(calleeResult.exitCode, 0, calleeResult.describe())

        # 5. Both nodes have taken the dead copy out of service.
        for node in (nodeA, nodeB):
            await node.location.store.reload()
            state = node.location.state()
            copies = {c["url"]: c["status"] for p in state["map"]["partitions"] for c in p["copies"]}
            self.assertNotEqual(copies[self.copies["A"][1]], "on", state)

        # 6. Kill the other copy of partition 0: its AORs get 503 + Retry-After, partition 1 still works.
        self.copies["B"][0].kill()
        result = await runSipp("register_auth_503.xml", targetB, "u1", calls=1,
                               extra=["-inf", authLines(self.directory, "p0", [self.users[0][0]]), "-auth_uri", DOMAIN],
                               keys={"domain": DOMAIN})
        self.assertEqual(result.exitCode, 0, result.describe())
        result = await runSipp("register_auth.xml", targetB, "u1", calls=1,
                               extra=["-inf", authLines(self.directory, "p1", [self.users[1][0]]), "-auth_uri", DOMAIN],
                               keys={"domain": DOMAIN})
        self.assertEqual(result.exitCode, 0, result.describe())
