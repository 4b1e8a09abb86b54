"""
Location routing and caller authentication through the routing service:
bindings to branches (Path, received), 404/480/503, and 407 challenges
with trusted networks.
"""

from __future__ import annotations

import re

from twisted.internet import defer
from twisted.trial import unittest

from voipgw.auth.digest import DigestAuthenticator, digestResponse
from voipgw.location.errors import PartitionUnavailable
from voipgw.subscribers.model import Subscriber, computeHA1
from voipgw.testing.routing import CALLER, RoutingHarness
from voipgw.transport.address import Address


class FakeSubscribers:
    def __init__(self, *users: tuple[str, str, str]) -> None:
        self.users = {
            (u, d): Subscriber(u, d, computeHA1(u, d, p), computeHA1(u, d, p, "SHA-256")) for u, d, p in users
        }
        self.fail = False

    def getSubscriber(self, username: str, domain: str) -> defer.Deferred:
        if self.fail:
            return defer.fail(RuntimeError("database down"))
        return defer.succeed(self.users.get((username.lower(), domain.lower())))


class BrokenStore:
    def lookup(self, aor: str, now: float) -> defer.Deferred:
        return defer.fail(PartitionUnavailable(3))


class LocationRoutingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.subscribers = FakeSubscribers(("bob", "example.com", "pw"), ("carol", "example.com", "pw"))
        self.h = RoutingHarness(subscribers=self.subscribers)
        self.addCleanup(self.h.stop)

    def final(self) -> int:
        [final] = {id(s.message): s for s in self.h.finalResponses()}.values()
        return final.message.code  # type: ignore[union-attr,no-any-return]

    def test_unknownUser(self) -> None:
        self.h.receive(self.h.invite("sip:nobody@example.com"))
        self.assertEqual(self.final(), 404)

    def test_knownUserNotRegistered(self) -> None:
        self.h.receive(self.h.invite("sip:carol@example.com"))
        self.assertEqual(self.final(), 480)

    def test_noSubscriberStore(self) -> None:
        h = RoutingHarness()
        self.addCleanup(h.stop)
        h.receive(h.invite("sip:nobody@example.com"))
        self.assertEqual([s.message.code for s in h.finalResponses()], [480])

    def test_storeUnavailable(self) -> None:
        h = RoutingHarness(location=BrokenStore(), section={"retry_after": "7"})
        self.addCleanup(h.stop)
        h.receive(h.invite("sip:bob@example.com"))
        [final] = h.finalResponses()
        self.assertEqual(final.message.code, 503)
        self.assertEqual(final.message.getHeader("Retry-After"), "7")
        self.assertEqual(h.counters.get("routing.location_unavailable"), 1)

    def test_requestURIIsContact(self) -> None:
        self.h.register("Bob@Example.com", "sip:bob@192.0.2.20:5062;ob")
        self.h.receive(self.h.invite("sip:bob@example.com"))
        sent = self.h.lastRequest("INVITE")
        self.assertEqual(str(sent.message.requestURI), "sip:bob@192.0.2.20:5062;ob")  # type: ignore[union-attr]
        self.assertEqual(sent.message.getHeader("To"), "<sip:bob@example.com>")

    def test_receivedIsDestination(self) -> None:
        """A NAT'ed contact: sent to where the REGISTER came from, the Request-URI stays the contact."""
        self.h.register("bob@example.com", "sip:bob@10.0.0.5:5060", received="sip:203.0.113.9:40001")
        self.h.receive(self.h.invite("sip:bob@example.com"))
        sent = self.h.lastRequest("INVITE")
        self.assertEqual(sent.destination, Address("udp", "203.0.113.9", 40001))
        self.assertEqual(str(sent.message.requestURI), "sip:bob@10.0.0.5:5060")  # type: ignore[union-attr]

    def test_receivedOverTCP(self) -> None:
        self.h.register("bob@example.com", "sip:bob@10.0.0.5:5060;transport=tcp", received="sip:203.0.113.9:40001")
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.assertEqual(self.h.lastRequest("INVITE").destination, Address("tcp", "203.0.113.9", 40001))

    def test_pathBecomesRoute(self) -> None:
        self.h.register("bob@example.com", "sip:bob@10.0.0.5:5060", received="sip:203.0.113.9:40001",
                        path=("<sip:192.0.2.99:5070;lr;ob>",))
        self.h.receive(self.h.invite("sip:bob@example.com"))
        sent = self.h.lastRequest("INVITE")
        self.assertEqual(sent.destination, Address("udp", "192.0.2.99", 5070))
        self.assertEqual(sent.message.getHeaderValues("Route"), ["<sip:192.0.2.99:5070;lr;ob>"])

    def test_badBindingSkipped(self) -> None:
        self.h.register("bob@example.com", "not a uri")
        self.h.register("bob@example.com", "sip:bob@192.0.2.20")
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.assertEqual(len(self.h.requests("INVITE")), 1)
        self.assertEqual(self.h.counters.get("routing.bad_bindings"), 1)

    def test_expiredBindingIgnored(self) -> None:
        self.h.register("bob@example.com", "sip:bob@192.0.2.20", expires=10)
        self.h.advance(11)
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.assertEqual(self.final(), 480)


class AuthenticationTests(unittest.TestCase):
    def setUp(self) -> None:
        self.subscribers = FakeSubscribers(("alice", "example.com", "secret"), ("bob", "example.com", "pw"))
        self.h = RoutingHarness(section={"trusted": "203.0.113.0/24, 2001:db8::/32"})
        self.h.stop()
        self.auth = DigestAuthenticator(self.subscribers, b"0123456789abcdef0123", self.h.clock, algorithms=("MD5",))
        self.h = RoutingHarness(section={"trusted": "203.0.113.0/24"}, authenticator=self.auth,
                                subscribers=self.subscribers, clock=self.h.clock)
        self.addCleanup(self.h.stop)
        self.h.register("bob@example.com", "sip:bob@192.0.2.20:5062")

    def credentials(self, challenge: str, uri: str, password: str = "secret") -> str:
        nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)  # type: ignore[union-attr]
        ha1 = computeHA1("alice", "example.com", password)
        response = digestResponse("MD5", ha1, nonce, "00000001", "abc", "auth", "INVITE", uri)
        return (f'Digest username="alice", realm="example.com", nonce="{nonce}", uri="{uri}", '
                f'response="{response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"')

    def test_challenged(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        [final] = self.h.finalResponses()
        self.assertEqual(final.message.code, 407)
        self.assertIn("realm=\"example.com\"", final.message.getHeader("Proxy-Authenticate"))
        self.assertIn(";tag=", final.message.getHeader("To"))
        self.assertEqual(self.h.requests("INVITE"), [])

    def test_authenticated(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        challenge = self.h.finalResponses()[0].message.getHeader("Proxy-Authenticate")
        self.h.clear()
        self.h.receive(self.h.invite("sip:bob@example.com", headers=(
            ("Proxy-Authorization", self.credentials(challenge, "sip:bob@example.com")),)))
        sent = self.h.lastRequest("INVITE")
        self.assertEqual(sent.message.getHeader("Proxy-Authorization"), None)
        self.assertEqual(self.h.counters.get("routing.auth_ok"), 1)

    def test_wrongPassword(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        challenge = self.h.finalResponses()[0].message.getHeader("Proxy-Authenticate")
        self.h.clear()
        self.h.receive(self.h.invite("sip:bob@example.com", headers=(
            ("Proxy-Authorization", self.credentials(challenge, "sip:bob@example.com", "wrong")),)))
        self.assertEqual([s.message.code for s in self.h.finalResponses()], [407])
        self.assertEqual(self.h.requests("INVITE"), [])

    def test_trustedSourceNotChallenged(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"), Address("udp", "203.0.113.50", 5060))
        self.assertEqual(len(self.h.requests("INVITE")), 1)

    def test_inDialogNotChallenged(self) -> None:
        self.h.receive(self.h.request("INVITE", "sip:bob@192.0.2.20:5062", toTag="x",
                                      headers=(("Route", "<sip:192.0.2.1:5060;lr>"),)))
        self.assertEqual(len(self.h.requests("INVITE")), 1)

    def test_foreignCallerToOurUser(self) -> None:
        """A call from another domain to one of our users is not challenged."""
        self.h.receive(self.h.invite("sip:bob@example.com", fromURI="sip:x@other.net"))
        self.assertEqual(len(self.h.requests("INVITE")), 1)

    def test_noOpenRelay(self) -> None:
        self.h.receive(self.h.invite("sip:x@198.51.100.200", fromURI="sip:x@other.net"))
        self.assertEqual([s.message.code for s in self.h.finalResponses()], [403])

    def test_noRelayForOtherMethods(self) -> None:
        """OPTIONS, MESSAGE-less methods and unknown methods from outside may not leave for foreign targets."""
        for method in ("OPTIONS", "NOTIFY", "FOOBAR"):
            self.h.clear()
            self.h.receive(self.h.request(method, "sip:x@198.51.100.200", fromURI="sip:alice@example.com"))
            self.assertEqual([s.message.code for s in self.h.finalResponses()], [403], method)
            self.assertEqual(self.h.requests(method), [])
        self.assertEqual(self.h.counters.get("routing.rejected.relay"), 3)

    def test_noRelayInDialogWithoutOurRoute(self) -> None:
        """An in-dialog request that never went through us (no Route of ours) is refused."""
        self.h.receive(self.h.request("BYE", "sip:x@198.51.100.200", toTag="t1"))
        self.assertEqual([s.message.code for s in self.h.finalResponses()], [403])
        self.assertEqual(self.h.requests("BYE"), [])

    def test_inDialogWithOurRouteRelayed(self) -> None:
        self.h.receive(self.h.request("BYE", "sip:x@198.51.100.200", toTag="t1",
                                      headers=(("Route", "<sip:192.0.2.1:5060;lr>"),)))
        self.assertEqual(len(self.h.requests("BYE")), 1)

    def test_subscriberCallingOutIsChallenged(self) -> None:
        """Our subscriber may call a foreign target once authenticated: 407 first, never a 403."""
        self.h.receive(self.h.invite("sip:x@198.51.100.200"))
        self.assertEqual([s.message.code for s in self.h.finalResponses()], [407])

    def test_trustedPeerRelays(self) -> None:
        self.h.receive(self.h.request("OPTIONS", "sip:x@198.51.100.200"), Address("udp", "203.0.113.9", 5060))
        self.assertEqual(len(self.h.requests("OPTIONS")), 1)

    def test_storeDown(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        challenge = self.h.finalResponses()[0].message.getHeader("Proxy-Authenticate")
        self.h.clear()
        self.subscribers.fail = True
        self.h.receive(self.h.invite("sip:bob@example.com", headers=(
            ("Proxy-Authorization", self.credentials(challenge, "sip:bob@example.com")),)))
        [final] = self.h.finalResponses()
        self.assertEqual(final.message.code, 503)
        self.assertEqual(final.message.getHeader("Retry-After"), "5")
        self.flushLoggedErrors(RuntimeError)

    def test_trustedConfigParsed(self) -> None:
        self.assertTrue(self.h.service.isTrusted(Address("udp", "203.0.113.1", 1)))
        self.assertFalse(self.h.service.isTrusted(CALLER))
