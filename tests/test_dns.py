"""
RFC 3263 resolution against a real DNS server: a twisted.names authority
on a free loopback UDP port, queried by a twisted.names client resolver.
"""

from __future__ import annotations

import os
import random
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.names import authority, client, dns, server
from twisted.trial import unittest

from voipgw.routing.dns import ResolutionFailed, SIPResolver
from voipgw.sip.uri import URI
from voipgw.testing.routing import RoutingHarness
from voipgw.transport.address import Address

ZONE = """
zone = [
    SOA('example.net', mname='ns.example.net', rname='root.example.net', serial=1, refresh=60, retry=60,
        expire=600, minimum=60),
    NAPTR('example.net', 10, 50, b's', b'SIP+D2T', b'', b'_sip._tcp.example.net', ttl=300),
    NAPTR('example.net', 20, 50, b's', b'SIP+D2U', b'', b'_sip._udp.example.net', ttl=300),
    SRV('_sip._tcp.example.net', 10, 0, 5070, 'dead.example.net', ttl=60),
    SRV('_sip._tcp.example.net', 20, 0, 5080, 'backup.example.net', ttl=60),
    SRV('_sip._udp.example.net', 10, 0, 5060, 'udp.example.net', ttl=60),
    SRV('_sip._udp.srvonly.example.net', 5, 1, 5090, 'a.example.net', ttl=60),
    SRV('_sip._udp.srvonly.example.net', 5, 0, 5091, 'b.example.net', ttl=60),
    A('dead.example.net', '127.0.0.10', ttl=120),
    A('backup.example.net', '127.0.0.11', ttl=120),
    A('udp.example.net', '127.0.0.12', ttl=120),
    A('a.example.net', '127.0.0.13', ttl=120),
    A('b.example.net', '127.0.0.14', ttl=120),
    A('plain.example.net', '127.0.0.15', ttl=2),
    AAAA('plain.example.net', '::1', ttl=2),
]
"""


class DNSTests(unittest.TestCase):
    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="voipgw-dns-")
        path = os.path.join(directory, "zone.py")
        with open(path, "w") as f:
            f.write(ZONE)
        zone = authority.PySourceAuthority(path)
        factory = server.DNSServerFactory(authorities=[zone])
        self.port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.names = client.Resolver(servers=[("127.0.0.1", self.port.getHost().port)], reactor=reactor)
        self.clock = Clock()
        self.resolver = SIPResolver(self.names, self.clock, rng=random.Random(1))

    def resolve(self, text: str) -> defer.Deferred:
        return self.resolver.resolve(URI.parse(text))

    @defer.inlineCallbacks
    def test_naptrSrvA(self):  # type: ignore[no-untyped-def]
        """NAPTR order picks TCP; SRV priorities give the failover order."""
        addresses = yield self.resolve("sip:bob@example.net")
        self.assertEqual(addresses, [Address("tcp", "127.0.0.10", 5070), Address("tcp", "127.0.0.11", 5080)])

    @defer.inlineCallbacks
    def test_naptrRespectsTransports(self):  # type: ignore[no-untyped-def]
        resolver = SIPResolver(self.names, self.clock, transports=("udp",))
        addresses = yield resolver.resolve(URI.parse("sip:bob@example.net"))
        self.assertEqual(addresses, [Address("udp", "127.0.0.12", 5060)])

    @defer.inlineCallbacks
    def test_srvWithoutNaptr(self):  # type: ignore[no-untyped-def]
        """Equal priority: weight 0 comes after weight 1 (RFC 2782 weighted order)."""
        addresses = yield self.resolve("sip:srvonly.example.net")
        self.assertEqual(addresses, [Address("udp", "127.0.0.13", 5090), Address("udp", "127.0.0.14", 5091)])

    @defer.inlineCallbacks
    def test_explicitTransport(self):  # type: ignore[no-untyped-def]
        addresses = yield self.resolve("sip:example.net;transport=udp")
        self.assertEqual(addresses, [Address("udp", "127.0.0.12", 5060)])

    @defer.inlineCallbacks
    def test_explicitPortSkipsSrv(self):  # type: ignore[no-untyped-def]
        addresses = yield self.resolve("sip:plain.example.net:5099")
        self.assertEqual(addresses, [Address("udp", "127.0.0.15", 5099), Address("udp", "::1", 5099)])

    @defer.inlineCallbacks
    def test_unknownName(self):  # type: ignore[no-untyped-def]
        with self.assertRaises(ResolutionFailed):
            yield self.resolve("sip:nothing.example.net")

    @defer.inlineCallbacks
    def test_cachedForTTL(self):  # type: ignore[no-untyped-def]
        yield self.resolve("sip:plain.example.net:5099")
        queries = self.resolver.queries
        yield self.resolve("sip:plain.example.net:5099")
        self.assertEqual(self.resolver.queries, queries)
        self.clock.advance(3)
        yield self.resolve("sip:plain.example.net:5099")
        self.assertEqual(self.resolver.queries, queries + 2)

    @defer.inlineCallbacks
    def test_proxyFailsOverAcrossTargets(self):  # type: ignore[no-untyped-def]
        """The proxy tries the SRV targets in order: unreachable first target, then the backup."""
        h = RoutingHarness(resolver=self.resolver, clock=self.clock)
        self.addCleanup(h.stop)
        h.transports.failSendsTo(Address("tcp", "127.0.0.10", 5070))
        h.receive(h.request("MESSAGE", "sip:bob@example.net"))
        for _ in range(50):
            if h.requests("MESSAGE"):
                break
            yield _turn()  # the DNS answers arrive through the real reactor
        self.clock.advance(0)
        first, second = h.requests("MESSAGE")
        self.assertEqual(first.destination, Address("tcp", "127.0.0.10", 5070))
        self.assertEqual(second.destination, Address("tcp", "127.0.0.11", 5080))
        self.assertNotEqual(first.message.topVia.branch, second.message.topVia.branch)
        h.answer(second, 200)
        self.assertEqual([s.message.code for s in h.finalResponses()], [200])


def _turn() -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d
