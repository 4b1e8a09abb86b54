"""
sipp registers provisioned subscribers through the full 401 -> 200 digest
exchange over UDP and TCP against a real node, and fails to with wrong
passwords.

Subscribers are provisioned with C{voipgw-admin subscriber import} (run
in-process) into a temporary SQLite database; the registrar uses that
database and a memory location store, which the assertions then read.

Debian's sipp 3.6 computes only MD5 digests and answers the first
WWW-Authenticate it sees, and it takes the digest uri from C{-auth_uri}
(else C{sip:remote_ip:port}, not the Request-URI), so these nodes offer C{algorithms = MD5, SHA-256}
(MD5 first) -- the setting for sites with such legacy clients.  The
SHA-256-first default is covered in C{tests.test_registrar} and
C{tests.test_auth_digest}.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.trial import unittest

from tests.nodes import listenerPort, startNode
from tests.siptools import SCENARIOS, provisionSubscribers, runSipp, toolMissing

DOMAIN = "example.test"
USERS = os.path.join(SCENARIOS, "register_users.csv")
WRONG = os.path.join(SCENARIOS, "register_wrong_users.csv")


def readUsers(path: str) -> list[tuple[str, str]]:
    """(username, password) of each line C{user;[authentication username=user password=pw];}."""
    users = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line == "SEQUENTIAL":
                continue
            username, keyword = line.split(";")[:2]
            password = keyword.rstrip("]").split("password=", 1)[1]
            users.append((username, password))
    return users


class SippRegisterTests(unittest.TestCase):
    timeout = 120

    if toolMissing("sipp"):
        skip = toolMissing("sipp")

    async def startRegistrar(self, transport: str, algorithms: tuple[str, ...]) -> tuple[Any, int]:
        directory = tempfile.mkdtemp(prefix="voipgw-register-")
        url = provisionSubscribers(directory, DOMAIN, dict(readUsers(USERS)))

        node = await startNode(self, transports=(transport,), sections={
            "node": {"domain": DOMAIN},
            "subscribers": {"master": url},
            "auth": {"algorithms": ", ".join(algorithms)},
        })
        self.location = node.location.store
        return node, listenerPort(node, transport)

    async def registered(self) -> dict[str, list[Any]]:
        found = {}
        for username, _ in readUsers(USERS):
            found[username] = await self.location.lookup(f"{username}@{DOMAIN}", reactor.seconds())
        return found

    async def _register(self, transport: str, sippTransport: str, algorithms: tuple[str, ...]) -> None:
        node, port = await self.startRegistrar(transport, algorithms)
        result = await runSipp("register_auth.xml", f"127.0.0.1:{port}", sippTransport, calls=10, rate=50,
                               extra=["-inf", USERS, "-auth_uri", DOMAIN], keys={"domain": DOMAIN})
        self.assertEqual(result.exitCode, 0, result.describe())
        bindings = await self.registered()
        for username, found in bindings.items():
            self.assertEqual(len(found), 1, username)
            [b] = found
            self.assertEqual(b.contact.split(";")[0].split("@")[0], f"sip:{username}")
            self.assertTrue(b.received.startswith(f"{transport}:127.0.0.1:"), b.received)
            remaining = b.expires - reactor.seconds()
            self.assertTrue(270 < remaining <= 300, remaining)
        self.assertEqual(node.counters.get("in.request.REGISTER"), 20)

    async def test_udp(self) -> None:
        await self._register("udp", "u1", ("MD5", "SHA-256"))

    async def test_tcp(self) -> None:
        await self._register("tcp", "t1", ("MD5", "SHA-256"))

    async def test_wrongPassword(self) -> None:
        """Wrong passwords: 401 again for every call, never a 200, no binding."""
        node, port = await self.startRegistrar("udp", ("MD5", "SHA-256"))
        result = await runSipp("register_wrong_password.xml", f"127.0.0.1:{port}", "u1", calls=10, rate=50,
                               extra=["-inf", WRONG, "-auth_uri", DOMAIN], keys={"domain": DOMAIN})
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(sum(len(found) for found in (await self.registered()).values()), 0)
        self.assertEqual(node.counters.get("out.response.2xx"), 0)
        self.assertEqual(node.counters.get("out.response.4xx"), 20)
