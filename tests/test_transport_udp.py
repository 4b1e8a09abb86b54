"""UDP transport: receiving, RFC 3261 §18.2.2 / RFC 3581 response routing, bad input."""

from __future__ import annotations

import socket

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from twisted.trial import unittest

from voipgw.sip.message import Limits, Request, parseMessage
from voipgw.transport.address import Address, parseListen
from voipgw.transport.manager import TransportService, TransportSettings

OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP %s;branch=z9hG4bKudp1%s\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
    b"Call-ID: udp-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[object, Address]] = []
        self.arrived: defer.Deferred = defer.Deferred()

    def receiveMessage(self, message: object, source: Address) -> None:
        self.messages.append((message, source))
        if not self.arrived.called:
            self.arrived.callback(None)


class Peer(DatagramProtocol):
    """A UDP socket that records what it receives."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.waiting: list[defer.Deferred] = []

    def datagramReceived(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.received.append(data)
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(data)

    def next(self, timeout: float = 5.0) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.waiting.append(d)
        d.addTimeout(timeout, reactor)
        return d


class UDPTransportTests(unittest.TestCase):
    def setUp(self) -> None:
        self.recorder = Recorder()
        self.service = self.makeService()
        self.port = self.service.listenerFor("udp").port  # type: ignore[union-attr]
        self.peer = Peer()
        self.peerPort = reactor.listenUDP(0, self.peer, interface="127.0.0.1")
        self.addCleanup(self.peerPort.stopListening)

    def makeService(self, settings: TransportSettings | None = None, host: str = "127.0.0.1") -> TransportService:
        service = TransportService(reactor, [parseListen(f"udp:{host}:0")], settings)
        service.receiver = self.recorder  # type: ignore[assignment]
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def send(self, data: bytes) -> None:
        self.peerPort.write(data, ("127.0.0.1", self.port))

    async def test_requestDeliveredWithSource(self) -> None:
        self.send(OPTIONS % (b"127.0.0.1:%d" % self.peerPort.getHost().port, b""))
        await self.recorder.arrived
        message, source = self.recorder.messages[0]
        self.assertIsInstance(message, Request)
        self.assertEqual(source, Address("udp", "127.0.0.1", self.peerPort.getHost().port))
        self.assertEqual(self.service.counters.get("in.request.OPTIONS"), 1)

    async def test_receivedAddedWhenViaHostDiffers(self) -> None:
        """§18.2.1: received= is added when sent-by is not the source address."""
        self.send(OPTIONS % (b"client.example.com:5060", b""))
        await self.recorder.arrived
        message, _ = self.recorder.messages[0]
        self.assertEqual(message.topVia.received, "127.0.0.1")  # type: ignore[attr-defined]

    async def test_rportFilledAndResponseSentThere(self) -> None:
        """RFC 3581: rport gets the source port and the response goes to it, not to sent-by."""
        self.send(OPTIONS % (b"10.99.0.1:5999", b";rport"))
        await self.recorder.arrived
        request, source = self.recorder.messages[0]
        via = request.topVia  # type: ignore[attr-defined]
        self.assertEqual(via.rport, str(self.peerPort.getHost().port))
        self.assertEqual(via.received, "127.0.0.1")
        from voipgw.sip.message import responseTo

        response = responseTo(request, 200, toTag="x")  # type: ignore[arg-type]
        waiting = self.peer.next()
        self.service.sendResponse(response, source)
        data = await waiting
        reply = parseMessage(data)
        self.assertEqual(reply.code, 200)  # type: ignore[union-attr]
        self.assertIn(f"rport={self.peerPort.getHost().port}", reply.getHeader("Via"))

    def test_responseWithoutRportGoesToSentByPort(self) -> None:
        """§18.2.2: without rport, the response goes to received at the sent-by port."""
        from voipgw.sip.message import Response

        response = Response(200, headers=[("Via", "SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKa;received=192.0.2.1")])
        self.assertEqual(self.service.responseDestination(response), Address("udp", "192.0.2.1", 5070))
        response = Response(200, headers=[("Via", "SIP/2.0/UDP host.example.com;branch=z9hG4bKa")])
        self.assertEqual(self.service.responseDestination(response), Address("udp", "host.example.com", 5060))

    def test_sourceAddressesReused(self) -> None:
        """
        Datagrams from one (host, port) share one source L{Address} naming
        the protocol they came in on; the cache is bounded.
        """
        from voipgw.transport import udp

        listener = self.service.listenerFor("udp")
        assert listener is not None
        protocol = listener.protocol
        seen: list[Address] = []
        self.patch(self.service, "bytesReceived", lambda data, source, endpoint, datagram: seen.append(source))
        protocol.datagramReceived(b"x", ("192.0.2.1", 5060))
        protocol.datagramReceived(b"x", ("192.0.2.1", 5060))
        protocol.datagramReceived(b"x", ("192.0.2.1", 5061))
        self.assertIs(seen[0], seen[1])
        self.assertEqual(seen[0], Address("udp", "192.0.2.1", 5060))
        self.assertIs(seen[0].connection, protocol)
        self.assertEqual(seen[2], Address("udp", "192.0.2.1", 5061))
        self.patch(udp, "_SOURCES_MAX", 2)
        protocol.datagramReceived(b"x", ("192.0.2.1", 5062))
        self.assertEqual(len(protocol._sources), 1)
        self.assertEqual(seen[3], Address("udp", "192.0.2.1", 5062))

    def test_responseDestinationRportAndMaddr(self) -> None:
        """
        RFC 3581: rport with a value wins; empty rport means the source port
        (UDP only); maddr counts only without a source; IPv6 brackets go.
        """
        from voipgw.sip.message import Response

        def destination(via: str, source: Address | None = None) -> Address:
            return self.service.responseDestination(Response(200, headers=[("Via", via)]), source)

        source = Address("udp", "192.0.2.1", 40000)
        self.assertEqual(destination("SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKa;received=192.0.2.1;rport=40000", source), source)
        self.assertEqual(destination("SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKa;rport", source), Address("udp", "10.0.0.9", 40000))
        self.assertEqual(destination("SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKa;rport"), Address("udp", "10.0.0.9", 5070))
        self.assertEqual(destination("SIP/2.0/TCP 10.0.0.9:5070;branch=z9hG4bKa;rport", source), Address("tcp", "10.0.0.9", 5070))
        self.assertEqual(destination("SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKa;maddr=239.1.1.1"), Address("udp", "239.1.1.1", 5060))
        self.assertEqual(destination("SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKa;maddr=239.1.1.1", source), Address("udp", "10.0.0.9", 5060))
        self.assertEqual(destination("SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKa"), Address("udp", "2001:db8::1", 5070))
        self.assertEqual(destination("SIP/2.0/TLS example.com;branch=z9hG4bKa"), Address("tls", "example.com", 5061))
        self.assertEqual(destination("SIP/2.0/SCTP example.com;branch=z9hG4bKa", source), Address("udp", "example.com", 5060))
        self.assertEqual(destination("SIP/2.0/SCTP example.com;branch=z9hG4bKa"), Address("udp", "example.com", 5060))

    async def test_malformedRequestAnswered400WithReason(self) -> None:
        """A request with a bad CSeq gets 400 whose reason names the fault."""
        bad = OPTIONS % (b"127.0.0.1:%d" % self.peerPort.getHost().port, b"")
        bad = bad.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
        waiting = self.peer.next()
        self.send(bad)
        data = await waiting
        reply = parseMessage(data)
        self.assertEqual(reply.code, 400)  # type: ignore[union-attr]
        self.assertIn("CSeq", reply.reason)  # type: ignore[union-attr]
        self.assertEqual(self.recorder.messages, [])
        self.assertEqual(self.service.counters.get("parse_errors"), 1)

    async def test_badVersionAnswered505(self) -> None:
        bad = (OPTIONS % (b"127.0.0.1:%d" % self.peerPort.getHost().port, b"")).replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
        waiting = self.peer.next()
        self.send(bad)
        reply = parseMessage(await waiting)
        self.assertEqual(reply.code, 505)  # type: ignore[union-attr]

    async def test_garbageDroppedAndCounted(self) -> None:
        """Binary garbage and unanswerable messages are dropped, counted, never delivered."""
        import os

        for _ in range(20):
            self.send(os.urandom(300))
        self.send(b"SIP/2.0 999999 Nope\r\n\r\n")
        self.send(b"INVITE\r\n\r\n")
        # A valid request after the garbage still gets through.
        self.send(OPTIONS % (b"127.0.0.1:%d" % self.peerPort.getHost().port, b""))
        await self.recorder.arrived
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(self.recorder.messages), 1)
        self.assertEqual(self.service.counters.get("parse_errors"), 22)
        self.assertEqual(self.peer.received, [])

    async def test_oversizeDatagramDropped(self) -> None:
        """A datagram over the configured limit is refused (513 when answerable)."""
        service = self.makeService(TransportSettings(limits=Limits(maxMessageSize=2000)))
        big = (OPTIONS % (b"127.0.0.1:%d" % self.peerPort.getHost().port, b"")).replace(
            b"Content-Length: 0\r\n", b"X-Padding: " + b"a" * 3000 + b"\r\nContent-Length: 0\r\n"
        )
        self.peerPort.write(big, ("127.0.0.1", service.listenerFor("udp").port))  # type: ignore[union-attr]
        await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(service.counters.get("parse_errors"), 1)
        self.assertEqual(self.recorder.messages, [])

    async def test_keepaliveIgnored(self) -> None:
        self.send(b"\r\n\r\n")
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(self.service.counters.get("keepalive.udp"), 1)
        self.assertEqual(self.service.counters.get("parse_errors"), 0)

    async def test_ipv6Listener(self) -> None:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
                s.bind(("::1", 0))
        except OSError:
            raise unittest.SkipTest("no IPv6 loopback")
        service = self.makeService(host="[::1]")
        listener = service.listenerFor("udp", "::1")
        assert listener is not None
        self.assertEqual(listener.host, "::1")
        peer = Peer()
        port = reactor.listenUDP(0, peer, interface="::1")
        self.addCleanup(port.stopListening)
        port.write(OPTIONS % (b"[::1]:%d" % port.getHost().port, b""), ("::1", listener.port))
        await self.recorder.arrived
        _, source = self.recorder.messages[0]
        self.assertEqual(source.host, "::1")


def _rmemMax() -> int:
    try:
        with open("/proc/sys/net/core/rmem_max") as f:
            return int(f.read())
    except OSError:
        return 0


def _receiveBuffer(service: TransportService) -> int:
    listener = service.listenerFor("udp")
    assert listener is not None
    return int(listener.portObject.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)) // 2


class ReceiveQueueDelayTests(unittest.TestCase):
    """A UDP listener reports how long datagrams waited in the kernel before it read them."""

    async def test_delayMeasured(self) -> None:
        recorder = Recorder()
        service = TransportService(reactor, [parseListen("udp:127.0.0.1:0")], TransportSettings())
        service.receiver = recorder  # type: ignore[assignment]
        service.startService()
        self.addCleanup(service.stopService)
        listener = service.listenerFor("udp")
        assert listener is not None
        self.assertEqual(service.currentReceiveQueueDelay(), 0.0)
        listener.portObject.stopReading()  # the node is busy: datagrams queue in the kernel
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        sender.bind(("127.0.0.1", 0))
        via = b"127.0.0.1:%d" % sender.getsockname()[1]
        for n in range(3):
            sender.sendto(OPTIONS % (via, b"q%d" % n), ("127.0.0.1", listener.port))
        await deferLater(reactor, 0.3, lambda: None)
        listener.portObject.startReading()
        await recorder.arrived
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(recorder.messages), 3)  # the whole batch delivered
        self.assertGreaterEqual(service.currentReceiveQueueDelay(), 0.25)
        self.assertLess(service.currentReceiveQueueDelay(), 5.0)
        # a datagram read at once waited (almost) nothing
        sender.sendto(OPTIONS % (via, b"q9"), ("127.0.0.1", listener.port))
        await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(len(recorder.messages), 4)
        self.assertLess(service.currentReceiveQueueDelay(), 0.05)


class StaleRequestTests(unittest.TestCase):
    """Overloaded, a new-work request that waited longer than maxQueueAge is dropped unread."""

    async def test_staleNewWorkDropped(self) -> None:
        recorder = Recorder()
        service = TransportService(reactor, [parseListen("udp:127.0.0.1:0")], TransportSettings())
        service.receiver = recorder  # type: ignore[assignment]
        service.maxQueueAge = 0.2
        service.startService()
        self.addCleanup(service.stopService)
        listener = service.listenerFor("udp")
        assert listener is not None
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        sender.bind(("127.0.0.1", 0))
        via = b"127.0.0.1:%d" % sender.getsockname()[1]
        bye = OPTIONS.replace(b"OPTIONS", b"BYE")
        listener.portObject.stopReading()
        sender.sendto(OPTIONS % (via, b"old"), ("127.0.0.1", listener.port))
        sender.sendto(bye % (via, b"old"), ("127.0.0.1", listener.port))
        sender.sendto(b"SIP/2.0 200 OK\r\n\r\n", ("127.0.0.1", listener.port))
        await deferLater(reactor, 0.3, lambda: None)
        sender.sendto(OPTIONS % (via, b"new"), ("127.0.0.1", listener.port))
        listener.portObject.startReading()
        await deferLater(reactor, 0.1, lambda: None)
        # the stale OPTIONS is gone; the stale BYE (finishes work) and the fresh OPTIONS are not
        self.assertEqual(sorted(m.method for m, _ in recorder.messages), ["BYE", "OPTIONS"])  # type: ignore[attr-defined]
        self.assertEqual(service.counters.get("dropped.stale"), 1)
        service.maxQueueAge = 0.0  # off: nothing is dropped
        listener.portObject.stopReading()
        sender.sendto(OPTIONS % (via, b"old2"), ("127.0.0.1", listener.port))
        await deferLater(reactor, 0.3, lambda: None)
        listener.portObject.startReading()
        await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(len(recorder.messages), 3)


class DatagramPortWriteTests(unittest.TestCase):
    """SIPDatagramPort.write keeps Twisted's address checks, made once per host."""

    async def test_checksOncePerHost(self) -> None:
        from twisted.internet import error

        service = TransportService(reactor, [parseListen("udp:127.0.0.1:0")], TransportSettings())
        service.startService()
        self.addCleanup(service.stopService)
        listener = service.listenerFor("udp")
        assert listener is not None
        port = listener.portObject
        peer = Peer()
        peerPort = reactor.listenUDP(0, peer, interface="127.0.0.1")
        self.addCleanup(peerPort.stopListening)
        self.assertRaises(error.InvalidAddressError, port.write, b"x", ("localhost", 5060))
        self.assertRaises(error.InvalidAddressError, port.write, b"x", ("::1", 5060))
        self.assertNotIn("localhost", port._checkedHosts)
        for n in range(3):
            port.write(b"datagram %d" % n, ("127.0.0.1", peerPort.getHost().port))
        self.assertEqual(port._checkedHosts, {"127.0.0.1"})
        while len(peer.received) < 3:
            await peer.next()
        self.assertEqual(peer.received, [b"datagram 0", b"datagram 1", b"datagram 2"])


class ReceiveBufferTests(unittest.TestCase):
    """[transport] udp_receive_buffer: SO_RCVBUF of UDP listeners, shared (SO_REUSEPORT) or not."""

    def setUp(self) -> None:
        self.rmemMax = _rmemMax()
        if self.rmemMax < 1 << 20:
            raise unittest.SkipTest("net.core.rmem_max below 1 MiB: the kernel would cap the buffer")

    def start(self, settings: TransportSettings) -> TransportService:
        service = TransportService(reactor, [parseListen("udp:127.0.0.1:0")], settings)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def test_defaultAsksForFourMiB(self) -> None:
        service = self.start(TransportSettings())
        self.assertEqual(_receiveBuffer(service), min(4 << 20, self.rmemMax))

    def test_sharedListenerToo(self) -> None:
        service = self.start(TransportSettings(reusePort=True, udpReceiveBuffer=1 << 20))
        self.assertEqual(_receiveBuffer(service), 1 << 20)

    def test_zeroKeepsSystemDefault(self) -> None:
        default = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(default.close)
        expected = default.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        service = self.start(TransportSettings(udpReceiveBuffer=0))
        self.assertEqual(_receiveBuffer(service), expected)

    def test_configKey(self) -> None:
        from voipgw.config import parseConfig

        config = parseConfig({"transport": {"udp_receive_buffer": "1048576"}})
        self.assertEqual(config.transport.udpReceiveBuffer, 1 << 20)
        self.assertEqual(parseConfig({}).transport.udpReceiveBuffer, 4 << 20)


class AdvertiseTests(unittest.TestCase):
    def test_wildcardListenerAdvertises(self) -> None:
        """A 0.0.0.0 listener is known by its advertised address: Via, isLocal."""
        service = TransportService(reactor, [parseListen("udp:0.0.0.0:0")], TransportSettings(advertise="203.0.113.5"))
        service.startService()
        self.addCleanup(service.stopService)
        listener = service.listenerFor("udp")
        assert listener is not None
        self.assertEqual((listener.host, listener.bindHost), ("203.0.113.5", "0.0.0.0"))
        self.assertTrue(service.isLocal("203.0.113.5", listener.port))
        self.assertFalse(service.isLocal("198.51.100.1", listener.port))
        self.assertFalse(service.isLocal("0.0.0.0", listener.port))
        from voipgw.transaction.layer import TransactionLayer
        from twisted.internet.task import Clock

        via = TransactionLayer(service, Clock()).localVia(Address("udp", "198.51.100.9", 5060))
        self.assertEqual((via.host, via.port), ("203.0.113.5", listener.port))

    def test_boundAddressUnchangedWithoutWildcard(self) -> None:
        service = TransportService(reactor, [parseListen("udp:127.0.0.1:0")], TransportSettings(advertise="203.0.113.5"))
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(service.listenerFor("udp").host, "127.0.0.1")  # type: ignore[union-attr]


class MarkReceivedTests(unittest.TestCase):
    """RFC 3261 §18.2.1 / RFC 3581 §4 on the parsed request: the wire form follows."""

    SOURCE = Address("udp", "192.0.2.7", 40123)

    def marked(self, vias: bytes) -> Request:
        data = (b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n" + vias +
                b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: m\r\n"
                b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        request = parseMessage(data)
        assert isinstance(request, Request)
        TransportService._markReceived(request, self.SOURCE)
        return request

    def assertWireMatches(self, request: Request, expected: list[str]) -> None:
        self.assertEqual(request.getHeaderValues("Via"), expected)
        again = parseMessage(request.toBytes())
        self.assertEqual(again.getHeaderValues("Via"), expected)
        self.assertEqual([str(v) for v in request.vias], [str(v) for v in again.vias])

    def test_rportOneViaPerLine(self) -> None:
        request = self.marked(b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport\r\n"
                              b"Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\n")
        self.assertWireMatches(request, [
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport=40123;received=192.0.2.7",
            "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb",
        ])

    def test_receivedWithFoldedVias(self) -> None:
        """Several Vias on the first line: each keeps its own value, only the top one is marked."""
        request = self.marked(b"Via: SIP/2.0/UDP host.example;branch=z9hG4bKa, SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKb\r\n")
        self.assertWireMatches(request, [
            "SIP/2.0/UDP host.example;branch=z9hG4bKa;received=192.0.2.7",
            "SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKb",
        ])

    def test_sentFromItsOwnAddressUntouched(self) -> None:
        request = self.marked(b"Via: SIP/2.0/UDP 192.0.2.7:40123;branch=z9hG4bKa\r\n")
        self.assertWireMatches(request, ["SIP/2.0/UDP 192.0.2.7:40123;branch=z9hG4bKa"])
