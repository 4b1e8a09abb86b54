"""TCP and TLS transports: framing, keep-alives, idle timeout, limits, TLS verification."""

from __future__ import annotations

import gc
import tempfile
import weakref

from twisted.internet import defer, reactor, ssl
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.test.proto_helpers import StringTransport
from twisted.trial import unittest

from tests.certs import TestCA
from voipgw.sip.message import Limits, Request, parseMessage, responseTo
from voipgw.transport.address import Address, parseListen
from voipgw.transport.manager import TransportService, TransportSettings
from voipgw.transport.stream import SIPStreamProtocol
from voipgw.transport.tls import TLSConfigError, TLSSettings

REQUEST = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5555;branch=z9hG4bKtcp%d\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
    b"Call-ID: tcp-%d\r\nCSeq: %d OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: %d\r\n\r\n%s"
)


def request(n: int, body: bytes = b"") -> bytes:
    return REQUEST % (n, n, n, len(body), body)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[object, Address]] = []

    def receiveMessage(self, message: object, source: Address) -> None:
        self.messages.append((message, source))


class FramingTests(unittest.TestCase):
    """Stream framing on a StringTransport and a Clock: no sockets."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.recorder = Recorder()
        self.service = TransportService(reactor, [], TransportSettings(idleTimeout=30, limits=Limits(maxMessageSize=4096)), clock=self.clock)
        self.service.receiver = self.recorder  # type: ignore[assignment]
        self.protocol = SIPStreamProtocol(self.service, "tcp")
        self.transport = StringTransport(peerAddress=_Peer())
        self.protocol.makeConnection(self.transport)

    def test_byteByByte(self) -> None:
        """A message delivered one byte at a time is framed once, complete."""
        for byte in request(1, b"v=0\r\n"):
            self.protocol.dataReceived(bytes([byte]))
        self.assertEqual(len(self.recorder.messages), 1)
        self.assertEqual(self.recorder.messages[0][0].body, b"v=0\r\n")  # type: ignore[attr-defined]

    def test_pipelined(self) -> None:
        """Several messages in one segment are cut by Content-Length."""
        self.protocol.dataReceived(request(1, b"abc") + request(2) + request(3, b"x" * 100))
        self.assertEqual([m.cseq.number for m, _ in self.recorder.messages], [1, 2, 3])  # type: ignore[attr-defined]
        self.assertEqual(self.recorder.messages[2][0].body, b"x" * 100)  # type: ignore[attr-defined]

    def test_crlfPingAnsweredWithPong(self) -> None:
        """RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong."""
        self.protocol.dataReceived(b"\r\n\r\n")
        self.assertEqual(self.transport.value(), b"\r\n")
        self.protocol.dataReceived(b"\r\n\r")
        self.protocol.dataReceived(b"\n" + request(1))
        self.assertEqual(self.transport.value(), b"\r\n\r\n")
        self.assertEqual(len(self.recorder.messages), 1)
        self.assertEqual(self.service.counters.get("keepalive.ping"), 2)

    def test_idleTimeout(self) -> None:
        """An idle connection is closed after idle_timeout; traffic resets the timer."""
        self.clock.advance(29)
        self.protocol.dataReceived(b"\r\n\r\n")
        self.clock.advance(29)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1.5)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.service.counters.get("connections.idle_closed"), 1)

    def test_headersForever(self) -> None:
        """A client sending headers without end is cut off at the size limit."""
        self.protocol.dataReceived(b"OPTIONS sip:x SIP/2.0\r\n")
        for i in range(200):
            self.protocol.dataReceived(b"X-Endless-%d: %s\r\n" % (i, b"a" * 40))
            if self.transport.disconnecting:
                break
        self.assertTrue(self.transport.disconnecting)
        self.assertLess(i, 200)
        self.assertEqual(self.recorder.messages, [])

    def test_badContentLengthAnsweredAndClosed(self) -> None:
        """A non-numeric Content-Length cannot be framed: 400, then the connection closes."""
        self.protocol.dataReceived(request(1).replace(b"Content-Length: 0", b"Content-Length: abc"))
        reply = parseMessage(self.transport.value().split(b"\r\n\r\n")[0] + b"\r\n\r\n")
        self.assertEqual(reply.code, 400)  # type: ignore[union-attr]
        self.assertIn("Content-Length", reply.reason)  # type: ignore[union-attr]
        self.assertTrue(self.transport.disconnecting)

    def test_oversizedBodyRefused(self) -> None:
        self.protocol.dataReceived(request(1).replace(b"Content-Length: 0", b"Content-Length: 999999"))
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.recorder.messages, [])

    def test_missingContentLengthAnswered(self) -> None:
        """
        Content-Length is mandatory on streams (RFC 3261 §20.14): the message
        is framed as ending at the blank line, answered 400, and the next one
        on the connection is still read.
        """
        data = request(1).replace(b"Content-Length: 0\r\n", b"")
        self.protocol.dataReceived(data + request(2))
        self.assertEqual([m.cseq.number for m, _ in self.recorder.messages], [2])  # type: ignore[attr-defined]
        reply = parseMessage(self.transport.value())
        self.assertEqual(reply.code, 400)  # type: ignore[union-attr]
        self.assertIn("Content-Length", reply.reason)  # type: ignore[union-attr]


class _Peer:
    host = "127.0.0.1"
    port = 5555


class ClientProtocol(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.waiting: list[tuple[int, defer.Deferred]] = []
        self.lost: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        self._check()

    def _check(self) -> None:
        count = self.data.count(b"\r\n\r\n")
        for n, d in list(self.waiting):
            if count >= n:
                self.waiting.remove((n, d))
                d.callback(self.data)

    def waitFor(self, messages: int) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.waiting.append((messages, d))
        self._check()
        return d.addTimeout(5, reactor)

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(None)


class Echo:
    """A receiver that answers every request 200 through the transport service."""

    def __init__(self, service: TransportService) -> None:
        self.service = service
        self.sources: list[Address] = []

    def receiveMessage(self, message: object, source: Address) -> None:
        self.sources.append(source)
        if isinstance(message, Request):
            self.service.sendResponse(responseTo(message, 200, toTag="t"), source)


class TCPTests(unittest.TestCase):
    def startService(self, specs: list[str], settings: TransportSettings | None = None) -> TransportService:
        service = TransportService(reactor, [parseListen(s) for s in specs], settings)
        service.receiver = Echo(service)  # type: ignore[assignment]
        service.startService()
        self.addCleanup(service.stopService)
        return service

    async def test_responseReusesConnection(self) -> None:
        """§18.2.2: the response goes back on the connection the request came on."""
        service = self.startService(["tcp:127.0.0.1:0"])
        port = service.listenerFor("tcp").port  # type: ignore[union-attr]
        client = ClientProtocol()
        connected = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(connected.transport.loseConnection)
        client.transport.write(request(1) + request(2))  # type: ignore[union-attr]
        data = await client.waitFor(2)
        self.assertEqual(data.count(b"SIP/2.0 200 OK"), 2)
        self.assertEqual(service.counters.get("connections.tcp.opened"), 1)

    async def test_closedConnectionFreedWithoutCollector(self) -> None:
        """
        A closed connection leaves no reference cycle (protocol <-> transport,
        protocol -> peer -> protocol): workers freeze old objects, and a
        frozen cycle would never be freed.
        """
        service = self.startService(["tcp:127.0.0.1:0"])
        received: list[int] = []
        # keeps no message (its source Address names the connection)
        service.receiver = type("Counter", (), {"receiveMessage": lambda self, m, s: received.append(1)})()  # type: ignore[assignment]
        port = service.listenerFor("tcp").port  # type: ignore[union-attr]
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        client = ClientProtocol()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        client.transport.write(request(1))  # type: ignore[union-attr]
        for _ in range(100):
            if received:
                break
            await deferLater(reactor, 0.01, lambda: None)
        [server] = service.connections.values()
        ref = weakref.ref(server)
        del server
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.lost
        for _ in range(100):
            if ref() is None:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertIsNone(ref())

    async def test_outboundConnectionOpenedAndReused(self) -> None:
        """Sending to a TCP destination opens one connection and reuses it."""
        server = self.startService(["tcp:127.0.0.1:0"])
        client = self.startService(["tcp:127.0.0.1:0"])
        serverPort = server.listenerFor("tcp").port  # type: ignore[union-attr]
        recorder = Recorder()
        client.receiver = recorder  # type: ignore[assignment]
        for n in (1, 2, 3):
            client.send(parseMessage(request(n)), Address("tcp", "127.0.0.1", serverPort))
        for _ in range(100):
            if len(recorder.messages) == 3:
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(len(recorder.messages), 3)
        self.assertEqual(client.counters.get("connections.tcp.opened"), 1)

    async def test_connectFailureReported(self) -> None:
        client = self.startService(["tcp:127.0.0.1:0"])
        errors: list[str] = []
        from tests.siptools import freePort
        import socket

        client.send(parseMessage(request(1)), Address("tcp", "127.0.0.1", freePort(socket.SOCK_STREAM)), onError=errors.append)
        for _ in range(100):
            if errors:
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(len(errors), 1)
        self.assertEqual(client.counters.get("send_errors"), 1)


class TLSTests(unittest.TestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="voipgw-tls-")
        self.ca = TestCA(self.directory)
        self.server = self.ca.issue("node")
        self.client = self.ca.issue("client", ("client.example.com",), client=True)

    def startService(self, tls: TLSSettings) -> TransportService:
        service = TransportService(reactor, [parseListen("tls:127.0.0.1:0")], TransportSettings(tls=tls))
        service.receiver = Echo(service)  # type: ignore[assignment]
        service.startService()
        self.addCleanup(service.stopService)
        return service

    async def connect(self, port: int, withClientCert: bool) -> ClientProtocol:
        trust = ssl.Certificate.loadPEM(open(self.ca.path, "rb").read())
        clientCert = None
        if withClientCert:
            clientCert = ssl.PrivateCertificate.loadPEM(open(self.client.certificate, "rb").read() + open(self.client.privateKey, "rb").read())
        options = ssl.optionsForClientTLS("localhost", trustRoot=trust, clientCertificate=clientCert)
        client = ClientProtocol()
        await connectProtocol(SSL4ClientEndpoint(reactor, "127.0.0.1", port, options), client)
        self.addCleanup(lambda: client.transport.loseConnection())  # type: ignore[union-attr]
        return client

    async def test_optionsOverTLS(self) -> None:
        service = self.startService(TLSSettings(self.server.certificate, self.server.privateKey))
        client = await self.connect(service.listenerFor("tls").port, withClientCert=False)  # type: ignore[union-attr]
        client.transport.write(request(1))  # type: ignore[union-attr]
        data = await client.waitFor(1)
        self.assertIn(b"SIP/2.0 200 OK", data)

    async def test_clientCertificateRequired(self) -> None:
        """With tls_verify_clients, a client without a certificate gets nothing."""
        service = self.startService(TLSSettings(self.server.certificate, self.server.privateKey, ca=self.ca.path, verifyClients=True))
        port = service.listenerFor("tls").port  # type: ignore[union-attr]
        client = await self.connect(port, withClientCert=False)
        client.transport.write(request(1))  # type: ignore[union-attr]
        await client.lost.addTimeout(5, reactor)
        self.assertNotIn(b"SIP/2.0", client.data)
        self.assertEqual(service.receiver.sources, [])  # type: ignore[union-attr]
        good = await self.connect(port, withClientCert=True)
        good.transport.write(request(2))  # type: ignore[union-attr]
        data = await good.waitFor(1)
        self.assertIn(b"SIP/2.0 200 OK", data)

    def test_missingFilesReported(self) -> None:
        with self.assertRaises(TLSConfigError) as e:
            TLSSettings("/nonexistent.crt", "/nonexistent.key").serverOptions()
        self.assertIn("/nonexistent", str(e.exception))
        with self.assertRaises(TLSConfigError):
            TLSSettings(self.server.certificate, self.server.privateKey, verifyClients=True).serverOptions()
