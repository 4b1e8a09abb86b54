"""
Worker processes (voipgw.workers): the kernel's SO_REUSEPORT behaviour the
design relies on, and a pool of 2 real worker processes on free ports:
OPTIONS on the shared port, REGISTER on one worker and lookup on the other
(location replication), and the responses to a forwarded request reaching
the worker that forwarded it (its private port in the Via).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import sys
import tempfile
from typing import Any, Optional

from twisted.internet import defer, reactor, utils
from twisted.internet.protocol import DatagramProtocol
from twisted.trial import unittest

from tests.nodes import freeSIPPort
from voipgw.config import parseConfig
from voipgw.workers import WorkerPool
from voipgw.workers.child import workerConfig
from voipgw.workers.pool import configSections, workerSettings

DOMAIN = "workers.test"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ReusePortKernelTests(unittest.TestCase):
    """What docs/workers.md relies on, checked on the running kernel."""

    def test_sameSourceSameSocket(self) -> None:
        """Datagrams from one source 4-tuple always reach the same SO_REUSEPORT socket."""
        if not hasattr(socket, "SO_REUSEPORT"):
            raise unittest.SkipTest("no SO_REUSEPORT")
        servers = []
        port = 0
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", port))
            port = s.getsockname()[1]
            s.settimeout(0.5)
            servers.append(s)
            self.addCleanup(s.close)
        clients = []
        for i in range(24):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.bind(("127.0.0.1", 0))
            self.addCleanup(c.close)
            clients.append(c)
        for round in range(4):
            for i, c in enumerate(clients):
                c.sendto(f"{i}".encode(), ("127.0.0.1", port))
        seen: dict[int, set[int]] = {}
        for index, s in enumerate(servers):
            for _ in range(4 * len(clients)):
                try:
                    data = s.recv(100)
                except socket.timeout:
                    break
                seen.setdefault(int(data), set()).add(index)
        self.assertEqual(sorted(seen), list(range(len(clients))), "every datagram arrived")
        for client, sockets in seen.items():
            self.assertEqual(len(sockets), 1, f"client {client} was split over sockets {sockets}")
        used = {next(iter(v)) for v in seen.values()}
        self.assertEqual(used, {0, 1}, "24 sources all hashed to one socket")


class WorkerConfigTests(unittest.TestCase):
    def test_workerConfig(self) -> None:
        config = parseConfig({"node": {"listen": "udp:127.0.0.1:5060, tcp:127.0.0.1:5060", "workers": "3",
                                       "worker_port_base": "7000"}})
        self.assertEqual(workerSettings(config), (3, 7000))
        spec = {"sections": configSections(config), "privatePortBase": 7000}
        worker = workerConfig(spec, 2)
        self.assertTrue(worker.transport.reusePort)
        self.assertEqual([(a.transport, a.host, a.port) for a in worker.transport.privateListen],
                         [("udp", "127.0.0.1", 7002), ("tcp", "127.0.0.1", 7002)])

    def test_badWorkerCount(self) -> None:
        from voipgw.errors import ConfigError

        config = parseConfig({"node": {"workers": "0"}})
        self.assertRaises(ConfigError, workerSettings, config)
        self.assertRaises(ValueError, WorkerPool, config, 0, reactor)


class SharedPreparationTests(unittest.TestCase):
    """The pool creates what its workers share before spawning them, so they never race to create it."""

    def test_embeddedSubscriberSchema(self) -> None:
        from sqlalchemy import create_engine

        from voipgw.db.migrations import recordedVersions
        from voipgw.subscribers.schema import MIGRATOR

        dataDir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, dataDir, True)
        config = parseConfig({"node": {"data_dir": dataDir, "workers": "2"}})
        pool = WorkerPool(config, 2, reactor)
        pool._prepareShared()
        pool._prepareShared()  # a second start finds it done
        engine = create_engine(f"sqlite:///{os.path.join(dataDir, 'subscribers.sqlite')}")
        with engine.connect() as conn:
            self.assertEqual(recordedVersions(conn)[MIGRATOR.component], MIGRATOR.latestVersion)
        engine.dispose()
        self.assertTrue(os.path.exists(os.path.join(dataDir, "auth-secret")))

    def test_clientServerDatabaseLeftAlone(self) -> None:
        """A MySQL master is initialised by voipgw-admin, never at start (no connection is tried)."""
        from voipgw.node import prepareEmbeddedSubscribers

        config = parseConfig({"node": {"data_dir": self.mktemp()},
                              "subscribers": {"master": "mysql+mysqldb://nobody@192.0.2.1:1/none"}})
        prepareEmbeddedSubscribers(config)  # returns at once: nothing to create here


class UDPPeer(DatagramProtocol):
    """A SIP peer in the test: collects what it receives."""

    def __init__(self) -> None:
        self.queue: defer.DeferredQueue[tuple[str, Any]] = defer.DeferredQueue()

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # type: ignore[override]
        self.queue.put((data.decode("utf-8", "replace"), addr))

    async def receive(self, timeout: float = 5.0, skipProvisional: bool = True) -> tuple[str, Any]:
        while True:
            d = self.queue.get()
            d.addTimeout(timeout, reactor)
            text, addr = await d
            if not (skipProvisional and text.startswith("SIP/2.0 1")):
                return text, addr

    def send(self, text: str, port: int) -> None:
        assert self.transport is not None
        self.transport.write(text.encode(), ("127.0.0.1", port))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.getHost().port)


def header(text: str, name: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in text.split("\r\n") if line.lower().startswith(name.lower() + ":")]


class WorkerPoolTests(unittest.TestCase):
    """Two worker processes sharing one port."""

    timeout = 90

    async def startPool(self) -> None:
        self.dataDir = tempfile.mkdtemp(prefix="voipgw-workers-test-")
        db = f"sqlite:///{os.path.join(self.dataDir, 'subscribers.sqlite')}"
        for argv in (["db", "init", "--db", db],
                     ["subscriber", "add", f"alice@{DOMAIN}", "--password", "alice-pw-long", "--db", db]):
            out, err, code = await utils.getProcessOutputAndValue(
                sys.executable, ["-m", "voipgw.admin", *argv], env=dict(os.environ), path=ROOT)
            self.assertEqual(code, 0, err)
        self.port = freeSIPPort()
        config = parseConfig({
            "node": {"listen": f"udp:127.0.0.1:{self.port}", "domain": DOMAIN, "data_dir": self.dataDir},
            "auth": {"algorithms": "MD5"},
            "routing": {"trusted": "127.0.0.0/8"},
        })
        self.pool = WorkerPool(config, 2, reactor, runDir=os.path.join(self.dataDir, "run"), logLevel="warn")
        self.info = await self.pool.startService()
        self.addCleanup(self.pool.stopService)

    def peer(self) -> UDPPeer:
        peer = UDPPeer()
        port = reactor.listenUDP(0, peer, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return peer

    def private(self, index: int) -> int:
        return int(self.info[index]["private"]["udp"])

    async def register(self, peer: UDPPeer, port: int, contactPort: int) -> str:
        def build(cseq: int, auth: str = "") -> str:
            return (f"REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bKr{cseq}{port};rport\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=r\r\nTo: <sip:alice@{DOMAIN}>\r\n"
                    f"Call-ID: reg-{port}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@127.0.0.1:{contactPort}>\r\n"
                    f"Expires: 600\r\n{auth}Content-Length: 0\r\n\r\n")

        peer.send(build(1), port)
        reply, _ = await peer.receive()
        self.assertTrue(reply.startswith("SIP/2.0 401"), reply[:80])
        challenge = header(reply, "WWW-Authenticate")[0]
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge[len("Digest"):]))
        ha1 = hashlib.md5(f"alice:{params['realm']}:alice-pw-long".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:sip:{DOMAIN}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{params['nonce']}:00000001:abcd:auth:{ha2}".encode()).hexdigest()
        auth = (f'Authorization: Digest username="alice", realm="{params["realm"]}", nonce="{params["nonce"]}", '
                f'uri="sip:{DOMAIN}", response="{response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="abcd"\r\n')
        peer.send(build(2, auth), port)
        reply, _ = await peer.receive()
        return reply

    async def test_optionsOnSharedPort(self) -> None:
        """Every source gets its 200 on the shared port, from the shared port."""
        await self.startPool()
        self.assertEqual(len({i["pid"] for i in self.info}), 2)
        for n in range(8):
            peer = self.peer()
            peer.send(f"OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bKo{n};rport\r\n"
                      f"Max-Forwards: 70\r\nFrom: <sip:p@{DOMAIN}>;tag=o{n}\r\nTo: <sip:{DOMAIN}>\r\n"
                      f"Call-ID: opt-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", self.port)
            reply, addr = await peer.receive()
            self.assertTrue(reply.startswith("SIP/2.0 200"), reply[:80])
            self.assertEqual(addr[1], self.port, "the response leaves through the shared socket")

    async def test_registerOnOneLookupOnOther(self) -> None:
        """
        REGISTER handled by worker 0, INVITE handled by worker 1: worker 1
        finds the contact (replicated), forwards with its private port in
        the Via, and the callee's 200 reaches worker 1, which relays it.
        """
        await self.startPool()
        callee = self.peer()
        reply = await self.register(self.peer(), self.private(0), callee.port)
        self.assertTrue(reply.startswith("SIP/2.0 200"), reply[:80])
        caller = self.peer()
        invite = (f"INVITE sip:alice@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{caller.port};branch=z9hG4bKinv1;rport\r\n"
                  f"Max-Forwards: 70\r\nFrom: <sip:bob@{DOMAIN}>;tag=b1\r\nTo: <sip:alice@{DOMAIN}>\r\n"
                  f"Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:{caller.port}>\r\n"
                  "Content-Length: 0\r\n\r\n")
        forwarded: Optional[str] = None
        for attempt in range(20):  # replication is asynchronous: retry a fresh INVITE briefly
            caller.send(invite.replace("z9hG4bKinv1", f"z9hG4bKinv{attempt}").replace("call-1", f"call-{attempt}"),
                        self.private(1))
            got = defer.ensureDeferred(callee.receive(timeout=0.5))
            try:
                forwarded, _ = await got
                break
            except defer.TimeoutError:
                reply, _ = await caller.receive()
                self.assertTrue(reply.startswith("SIP/2.0 480") or reply.startswith("SIP/2.0 404"), reply[:80])
        self.assertIsNotNone(forwarded, "worker 1 never found the contact registered through worker 0")
        assert forwarded is not None
        self.assertTrue(forwarded.startswith("INVITE sip:alice@127.0.0.1:"), forwarded[:80])
        vias = [v for value in header(forwarded, "Via") for v in value.split(",")]
        self.assertIn(f"127.0.0.1:{self.private(1)};", vias[0], "the forwarding worker's private port is in the Via")
        response = "\r\n".join(
            ["SIP/2.0 200 OK"] + [f"Via: {v}" for v in header(forwarded, "Via")]
            + [f"From: {header(forwarded, 'From')[0]}", f"To: {header(forwarded, 'To')[0]};tag=callee",
               f"Call-ID: {header(forwarded, 'Call-ID')[0]}", f"CSeq: {header(forwarded, 'CSeq')[0]}",
               f"Contact: <sip:alice@127.0.0.1:{callee.port}>", "Content-Length: 0", "", ""])
        viaPort = int(re.search(r"127\.0\.0\.1:(\d+)", vias[0]).group(1))  # type: ignore[union-attr]
        callee.send(response, viaPort)
        callId = header(forwarded, "Call-ID")[0]
        while True:
            reply, _ = await caller.receive()
            if header(reply, "Call-ID")[0] == callId:
                break
            # an earlier attempt's 480, retransmitted by its INVITE server
            # transaction (timer G): this caller never ACKs it
            self.assertTrue(reply.startswith("SIP/2.0 480") or reply.startswith("SIP/2.0 404"), reply[:80])
        self.assertTrue(reply.startswith("SIP/2.0 200"), reply[:80])
        self.assertIn("tag=callee", header(reply, "To")[0])
