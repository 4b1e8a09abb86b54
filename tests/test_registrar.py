# -*- test-case-name: tests.test_registrar -*-
"""
L{voipgw.registrar}: every RFC 3261 §10.3 rule with wire-byte REGISTERs
through a real L{TransactionLayer} on a L{FakeTransportService}, against
the memory location store (started by a L{LocationService}, so its expiry
timer runs on the test's clock) and a SQLite subscriber store.
"""

from __future__ import annotations

import uuid
from random import Random
from typing import Any, Optional, Sequence

from twisted.internet import defer, reactor, task
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from tests.test_auth_digest import SECRET, challenges, credentials, makeRequest, subscriberStore
from voipgw.auth import DigestAuthenticator
from voipgw.db.errors import DatabaseUnavailable
from voipgw.errors import ConfigError
from voipgw.interfaces import ILocationStore, ISIPApplication
from voipgw.location.errors import PartitionUnavailable
from voipgw.location.memory import MemoryLocationStore
from voipgw.location.service import LocationService
from voipgw.registrar import Registrar, RegistrarConfig
from voipgw.sip.message import Limits, Response, parseMessage
from voipgw.testing import FakeTransportService
from voipgw.transaction import TransactionLayer
from voipgw.transport.address import Address

DOMAIN = "example.test"
SOURCE = Address("udp", "198.51.100.7", 5062)
USERS = [
    ("alice", DOMAIN, "alice-secret", {}),
    ("bob", DOMAIN, "bob-secret", {"maxContacts": 1}),
    ("carol", DOMAIN, "carol-secret", {}),
]


def registerBytes(
    user: str = "alice",
    contacts: Sequence[str] = ("<sip:alice@192.0.2.7:5060>",),
    expires: Optional[str] = None,
    callId: str = "call-1",
    cseq: int = 1,
    headers: Sequence[str] = (),
    ruri: str = f"sip:{DOMAIN}",
    toDomain: str = DOMAIN,
    authorization: Optional[str] = None,
) -> bytes:
    lines = [
        f"REGISTER {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK{uuid.uuid4().hex};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user or 'alice'}@{toDomain}>;tag=from{callId}",
        f"To: <sip:{user}@{toDomain}>" if user else f"To: <sip:{toDomain}>",
        f"Call-ID: {callId}",
        f"CSeq: {cseq} REGISTER",
        "User-Agent: voipgw-test/1",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += list(headers)
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


class FailingStore:
    """A location store wrapper whose operations fail on demand."""

    def __init__(self, store: MemoryLocationStore) -> None:
        self.store = store
        self.failLookup: Optional[Exception] = None
        self.failSave: Optional[int] = None  # the number of the save that fails (once)
        self.saves = 0

    def lookup(self, aor: str, now: float) -> Any:
        if self.failLookup is not None:
            return defer.fail(self.failLookup)
        return self.store.lookup(aor, now)

    def save(self, binding: Any) -> Any:
        self.saves += 1
        if self.saves == self.failSave:
            return defer.fail(PartitionUnavailable(3, "both copies down"))
        return self.store.save(binding)

    def remove(self, aor: str, key: str) -> Any:
        return self.store.remove(aor, key)

    def removeAll(self, aor: str) -> Any:
        return self.store.removeAll(aor)


class RegistrarTestCase(TestCase):
    section: dict[str, str] = {}
    authenticated = True

    async def setUp(self) -> None:  # type: ignore[override]
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.subscribers = await subscriberStore(self, self.clock, USERS)
        self.store = MemoryLocationStore(self.clock)
        self.location: Any = self.store
        service = LocationService(self.store)
        await service.startService()
        self.addCleanup(service.stopService)
        self.auth = DigestAuthenticator(self.subscribers, SECRET, self.clock) if self.authenticated else None
        self.registrar = self.makeRegistrar()
        self.nc = 0
        self.challenge: Any = None

    def makeRegistrar(self, **section: str) -> Registrar:
        config = RegistrarConfig.fromSection({**self.section, **section})
        self.registrar = Registrar(config, self.location, self.auth, [DOMAIN, "alias.test"], self.clock,
                                   random=Random(7))
        self.transports = FakeTransportService(self.clock)
        self.layer = TransactionLayer(self.transports, self.clock, user=self.registrar)
        return self.registrar

    async def deliver(self, message: Any, source: Address = SOURCE) -> Response:
        """Hand a message to the layer; wait for the final response as the peer reads it."""
        before = len(self.transports.sent)
        if isinstance(message, bytes):
            self.transports.receive(message, source)
        else:
            self.layer.receiveMessage(message, source)
        for _ in range(5000):
            finals = [s for s in self.transports.sent[before:] if s.isResponse and s.message.code >= 200]  # type: ignore[attr-defined]
            if finals:
                parsed = finals[-1].parsed()
                assert isinstance(parsed, Response)
                return parsed
            await deferLater(reactor, 0.001, lambda: None)
        self.fail("no final response")

    def authorization(self, user: str = "alice", password: Optional[str] = None, ruri: str = f"sip:{DOMAIN}") -> str:
        """Credentials for one request: one challenge per test, nc counting up."""
        if self.challenge is None:
            response = self.auth.challenge(makeRequest(uri=ruri), DOMAIN)  # type: ignore[union-attr]
            self.challenge = challenges(response)[0]
        self.nc += 1
        return credentials(self.challenge, username=user, password=password or f"{user}-secret",
                           uri=ruri, nc=self.nc, cnonce=f"c{self.nc}")

    async def register(self, user: str = "alice", **kw: Any) -> Response:
        """One authorised REGISTER (no 401 round trip)."""
        if self.auth is not None and "authorization" not in kw:
            kw["authorization"] = self.authorization(user, ruri=kw.get("ruri", f"sip:{DOMAIN}"))
        return await self.deliver(registerBytes(user, **kw))

    async def bindings(self, aor: str = f"alice@{DOMAIN}") -> list[Any]:
        return list(await self.store.lookup(aor, self.clock.seconds()))

    def contactsOf(self, response: Response) -> list[tuple[str, dict[str, Optional[str]]]]:
        return [(str(c.uri), c.params) for c in response.contacts]


class RegistrationTests(RegistrarTestCase):
    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(ISIPApplication, self.registrar))
        self.assertEqual((self.registrar.name, self.registrar.methods), ("registrar", {"REGISTER"}))
        self.assertTrue(verifyObject(ILocationStore, self.store))
        self.assertRaises(ValueError, Registrar, RegistrarConfig(), self.store, None, [], self.clock)

    async def test_challengeThenOK(self) -> None:
        """401 with both challenges, then 200 with the binding, its expiry and a Date."""
        first = await self.deliver(registerBytes(cseq=1))
        self.assertEqual(first.code, 401)
        self.assertEqual([c.params["algorithm"] for c in challenges(first)], ["SHA-256", "MD5"])
        self.assertEqual(await self.bindings(), [])
        value = credentials(challenges(first)[0])
        ok = await self.deliver(registerBytes(cseq=2, authorization=value))
        self.assertEqual(ok.code, 200, ok.reason)
        self.assertEqual(self.contactsOf(ok), [("sip:alice@192.0.2.7:5060", {"expires": "3600"})])
        self.assertEqual(ok.getHeader("Date"), "Tue, 14 Nov 2023 22:13:20 GMT")
        self.assertIsNotNone(ok.toAddress.tag)
        [b] = await self.bindings()
        self.assertEqual((b.contact, b.callId, b.cseq, b.expires), ("sip:alice@192.0.2.7:5060", "call-1", 2,
                                                                    self.clock.seconds() + 3600))
        self.assertEqual((b.received, b.userAgent), ("udp:198.51.100.7:5062", "voipgw-test/1"))

    async def test_challengeIsStateless(self) -> None:
        """
        The 401 keeps no transaction (RFC 3261 §8.2.7), the 200 does (timer
        J absorbs its retransmissions); a retransmitted first REGISTER is
        challenged afresh.
        """
        first = await self.deliver(registerBytes(cseq=1))
        self.assertEqual(first.code, 401)
        self.assertEqual(self.layer.server, {})
        again = await self.deliver(registerBytes(cseq=1))
        self.assertEqual(again.code, 401)
        self.assertNotEqual(challenges(again)[0].params["nonce"], challenges(first)[0].params["nonce"])
        ok = await self.deliver(registerBytes(cseq=2, authorization=credentials(challenges(again)[0])))
        self.assertEqual(ok.code, 200, ok.reason)
        self.assertEqual(len(self.layer.server), 1)

    async def test_wrongPassword(self) -> None:
        """A wrong password gets a fresh challenge and never a binding."""
        first = await self.deliver(registerBytes(cseq=1))
        value = credentials(challenges(first)[0], password="guess")
        again = await self.deliver(registerBytes(cseq=2, authorization=value))
        self.assertEqual(again.code, 401)
        self.assertEqual(await self.bindings(), [])

    async def test_unknownSubscriberChallengedFirst(self) -> None:
        """An unprovisioned AOR is challenged like any other (existence is not revealed)."""
        first = await self.deliver(registerBytes("mallory", cseq=1))
        self.assertEqual(first.code, 401)
        value = credentials(challenges(first)[0], username="mallory", password="x")
        self.assertEqual((await self.deliver(registerBytes("mallory", cseq=2, authorization=value))).code, 401)

    async def test_addRefreshRemove(self) -> None:
        self.assertEqual((await self.register(cseq=1)).code, 200)
        self.clock.advance(10)
        refreshed = await self.register(cseq=2, contacts=["<sip:alice@192.0.2.7:5060>;expires=120"])
        self.assertEqual(self.contactsOf(refreshed), [("sip:alice@192.0.2.7:5060", {"expires": "120"})])
        [b] = await self.bindings()
        self.assertEqual((b.expires, b.cseq), (self.clock.seconds() + 120, 2))
        removed = await self.register(cseq=3, contacts=["<sip:alice@192.0.2.7:5060>"], expires="0")
        self.assertEqual((removed.code, removed.contacts), (200, []))
        self.assertEqual(await self.bindings(), [])
        self.assertEqual(self.store.stats()["bindings"], 0)

    async def test_equivalentContactRefreshes(self) -> None:
        """A contact written differently but §19.1.4-equivalent refreshes the same binding."""
        await self.register(cseq=1, contacts=["<sip:alice@192.0.2.7:5060;transport=udp>"])
        response = await self.register(cseq=2, contacts=["<sip:alice@192.0.2.7:5060;TRANSPORT=UDP>;expires=90"])
        self.assertEqual(len(response.contacts), 1)
        [b] = await self.bindings()
        self.assertEqual(b.expires, self.clock.seconds() + 90)

    async def test_fetch(self) -> None:
        """A REGISTER without Contact lists the bindings and changes nothing."""
        await self.register(cseq=1, contacts=["<sip:alice@192.0.2.7:5060>", "<sip:alice@192.0.2.8:5060>;expires=600"])
        self.clock.advance(100)
        before = await self.bindings()
        fetched = await self.register(cseq=2, contacts=[])
        self.assertEqual(fetched.code, 200)
        self.assertEqual(sorted(self.contactsOf(fetched)), [
            ("sip:alice@192.0.2.7:5060", {"expires": "3500"}),
            ("sip:alice@192.0.2.8:5060", {"expires": "500"}),
        ])
        self.assertEqual(await self.bindings(), before)

    async def test_wildcard(self) -> None:
        await self.register(cseq=1, contacts=["<sip:alice@192.0.2.7:5060>", "<sip:alice@192.0.2.8:5060>"])
        for contacts, expires in ((["*"], "60"), (["*"], None), (["*", "<sip:alice@192.0.2.9>"], "0"),
                                  (["<sip:alice@192.0.2.9>, *"], "0")):
            response = await self.register(cseq=2, contacts=contacts, expires=expires)
            self.assertEqual(response.code, 400, (contacts, expires))
            self.assertIn("Contact: *", response.reason)
        self.assertEqual(len(await self.bindings()), 2)
        response = await self.register(cseq=3, contacts=["*"], expires="0")
        self.assertEqual((response.code, response.contacts), (200, []))
        self.assertEqual(await self.bindings(), [])

    async def test_callIdCSeqOrdering(self) -> None:
        """§10.3 step 7: same Call-ID and CSeq not higher -> 500, nothing changes; another Call-ID updates."""
        await self.register(callId="A", cseq=5, contacts=["<sip:alice@192.0.2.7:5060>;expires=600"])
        before = await self.bindings()
        for cseq in (5, 4):
            response = await self.register(callId="A", cseq=cseq, contacts=["<sip:alice@192.0.2.7:5060>;expires=100"])
            self.assertEqual(response.code, 500, cseq)
            self.assertIn("out-of-order", response.reason)
        wildcard = await self.register(callId="A", cseq=4, contacts=["*"], expires="0")
        self.assertEqual(wildcard.code, 500)
        removal = await self.register(callId="A", cseq=5, contacts=["<sip:alice@192.0.2.7:5060>"], expires="0")
        self.assertEqual(removal.code, 500)
        self.assertEqual(await self.bindings(), before)
        other = await self.register(callId="B", cseq=1, contacts=["<sip:alice@192.0.2.7:5060>;expires=100"])
        self.assertEqual(other.code, 200)
        [b] = await self.bindings()
        self.assertEqual((b.callId, b.cseq, b.expires), ("B", 1, self.clock.seconds() + 100))
        self.assertEqual((await self.register(callId="B", cseq=2, contacts=["*"], expires="0")).code, 200)

    async def test_intervalTooBrief(self) -> None:
        response = await self.register(contacts=["<sip:alice@192.0.2.7:5060>;expires=30"])
        self.assertEqual((response.code, response.getHeader("Min-Expires")), (423, "60"))
        response = await self.register(cseq=2, contacts=["<sip:alice@192.0.2.7:5060>", "<sip:a@192.0.2.8>"],
                                       expires="59")
        self.assertEqual(response.code, 423)
        self.assertEqual(await self.bindings(), [])

    async def test_expiresSources(self) -> None:
        """Contact expires beats the Expires header, which beats default_expires; max_expires clamps."""
        response = await self.register(contacts=["<sip:a@192.0.2.1>", "<sip:a@192.0.2.2>;expires=900",
                                                 "<sip:a@192.0.2.3>;expires=100000"], expires="300")
        self.assertEqual(sorted((uri, p["expires"]) for uri, p in self.contactsOf(response)), [
            ("sip:a@192.0.2.1", "300"), ("sip:a@192.0.2.2", "900"), ("sip:a@192.0.2.3", "3600")])
        self.makeRegistrar(default_expires="1800")
        response = await self.register(cseq=2, contacts=["<sip:a@192.0.2.4>"])
        self.assertIn(("sip:a@192.0.2.4", {"expires": "1800"}), self.contactsOf(response))

    async def test_badExpires(self) -> None:
        """Negative, over 2**32-1 or garbage -> 400 naming the fault; nothing stored."""
        for expires, contact, reason in (
            ("-1", "<sip:a@192.0.2.1>", "malformed Expires '-1'"),
            (str(2**40), "<sip:a@192.0.2.1>", f"Expires {2**40} out of range"),
            ("soon", "<sip:a@192.0.2.1>", "malformed Expires 'soon'"),
            (None, "<sip:a@192.0.2.1>;expires=abc", "malformed Contact expires 'abc'"),
            (None, "<sip:a@192.0.2.1>;expires=-5", "expires"),
            (None, f"<sip:a@192.0.2.1>;expires={2**40}", "out of range"),
            (None, "<sip:a@192.0.2.1>;expires", "without a value"),
            (None, "<sip:a@192.0.2.1>;expires=\u0661\u0662", "expires"),
        ):
            response = await self.register(contacts=[contact], expires=expires)
            self.assertEqual(response.code, 400, (expires, contact))
            self.assertIn(reason, response.reason)
        self.assertEqual(self.store.stats()["bindings"], 0)

    async def test_qOrder(self) -> None:
        response = await self.register(contacts=["<sip:a@192.0.2.1>;q=0.1", "<sip:a@192.0.2.2>;q=0.9",
                                                 "<sip:a@192.0.2.3>"])
        self.assertEqual([(u, p.get("q")) for u, p in self.contactsOf(response)],
                         [("sip:a@192.0.2.3", None), ("sip:a@192.0.2.2", "0.9"), ("sip:a@192.0.2.1", "0.1")])
        self.assertEqual(sorted(b.q for b in await self.bindings()), [0.1, 0.9, 1.0])
        for bad in ("1.5", "0.1234", "abc", "-0"):
            response = await self.register(cseq=2, contacts=[f"<sip:a@192.0.2.4>;q={bad}"])
            self.assertEqual(response.code, 400, bad)
            self.assertIn("q-value", response.reason)
        self.assertEqual(len(await self.bindings()), 3)

    async def test_path(self) -> None:
        """Path is stored; echoed in the 200 when the UA sent Supported: path (RFC 3327)."""
        path = ["<sip:edge1.example.test;lr>", "<sip:edge2.example.test;lr>"]
        response = await self.register(headers=[f"Path: {path[0]}", f"Path: {path[1]}", "Supported: path"])
        self.assertEqual(response.getHeaderValues("Path"), path)
        [b] = await self.bindings()
        self.assertEqual(b.path, tuple(path))
        response = await self.register(cseq=2, headers=[f"Path: {path[1]}"])
        self.assertEqual(response.getHeaderValues("Path"), [])
        [b] = await self.bindings()
        self.assertEqual(b.path, (path[1],))

    async def test_received(self) -> None:
        """The source address is stored for NAT'd clients (transport:host:port)."""
        await self.deliver(registerBytes(authorization=self.authorization()), Address("tcp", "203.0.113.9", 40123))
        [b] = await self.bindings()
        self.assertEqual(b.received, "tcp:203.0.113.9:40123")

    async def test_instanceRegId(self) -> None:
        """RFC 5626: one binding per instance-id and reg-id, whatever the contact URI."""
        instance = '"<urn:uuid:00000000-0000-1000-8000-00a0c91e6bf6>"'
        first = await self.register(contacts=[f"<sip:alice@192.0.2.7:5060>;+sip.instance={instance};reg-id=1"],
                                    headers=["Supported: path, outbound"])
        self.assertEqual(first.getHeader("Require"), "outbound")
        await self.register(cseq=2, contacts=[f"<sip:alice@192.0.2.99:6000>;+sip.instance={instance};reg-id=1"])
        [b] = await self.bindings()
        self.assertEqual((b.contact, b.instanceId, b.regId), ("sip:alice@192.0.2.99:6000",
                                                              instance.strip('"'), 1))
        response = await self.register(cseq=3, contacts=[f"<sip:alice@192.0.2.98:6000>;+sip.instance={instance};reg-id=2"])
        self.assertEqual(len(await self.bindings()), 2)
        self.assertEqual({c.params.get("reg-id") for c in response.contacts}, {"1", "2"})
        self.assertEqual({c.params.get("+sip.instance") for c in response.contacts}, {instance})
        for bad in (f";+sip.instance={instance};reg-id=0", ";+sip.instance=urn:x", f";+sip.instance={instance};reg-id=x"):
            response = await self.register(cseq=4, contacts=[f"<sip:alice@192.0.2.97>{bad}"])
            self.assertEqual(response.code, 400, bad)

    async def test_jitter(self) -> None:
        """expires_jitter_percent grants up to that much less, never below min_expires."""
        self.makeRegistrar(expires_jitter_percent="20")
        granted = []
        for i in range(40):
            response = await self.register(cseq=i + 1, contacts=[f"<sip:a@192.0.2.{i + 1}>"], expires="3600")
            granted.append(int(dict(self.contactsOf(response))[f"sip:a@192.0.2.{i + 1}"]["expires"] or 0))
        self.assertTrue(all(2880 <= g <= 3600 for g in granted), granted)
        self.assertGreater(len(set(granted)), 10)
        response = await self.register(cseq=100, contacts=["<sip:a@192.0.2.200>"], expires="60")
        self.assertEqual(dict(self.contactsOf(response))["sip:a@192.0.2.200"]["expires"], "60")

    async def test_expiryOnClock(self) -> None:
        """Bindings vanish on time, removed by the store's timer (no request, no scan)."""
        await self.register(contacts=["<sip:a@192.0.2.1>;expires=60", "<sip:a@192.0.2.2>;expires=120"])
        self.clock.advance(59.5)
        self.assertEqual(self.store.stats()["bindings"], 2)
        self.clock.advance(1)
        self.assertEqual(self.store.stats()["bindings"], 1)
        self.clock.advance(60)
        self.assertEqual(self.store.stats(), {**self.store.stats(), "bindings": 0, "aors": 0, "expired": 2})
        self.assertEqual((await self.register(cseq=2, contacts=[])).contacts, [])


class LimitTests(RegistrarTestCase):
    section = {"max_contacts": "2"}

    async def test_replaceOldest(self) -> None:
        for i in range(3):
            await self.register(cseq=i + 1, contacts=[f"<sip:a@192.0.2.{i + 1}>"])
            self.clock.advance(5)
        self.assertEqual(sorted(b.contact for b in await self.bindings()), ["sip:a@192.0.2.2", "sip:a@192.0.2.3"])
        # refreshing the oldest makes it the newest
        await self.register(cseq=10, contacts=["<sip:a@192.0.2.2>"])
        self.clock.advance(5)
        await self.register(cseq=11, contacts=["<sip:a@192.0.2.4>"])
        self.assertEqual(sorted(b.contact for b in await self.bindings()), ["sip:a@192.0.2.2", "sip:a@192.0.2.4"])
        response = await self.register(cseq=12, contacts=[f"<sip:a@192.0.2.{i}>" for i in (5, 6, 7)])
        self.assertEqual(response.code, 403)

    async def test_reject(self) -> None:
        self.makeRegistrar(max_contacts_policy="reject")
        await self.register(cseq=1, contacts=["<sip:a@192.0.2.1>", "<sip:a@192.0.2.2>"])
        response = await self.register(cseq=2, contacts=["<sip:a@192.0.2.3>"])
        self.assertEqual(response.code, 403)
        self.assertIn("more than 2 contacts", response.reason)
        self.assertEqual(len(await self.bindings()), 2)
        # replacing one within the limit is fine
        ok = await self.register(cseq=3, contacts=["<sip:a@192.0.2.1>;expires=0", "<sip:a@192.0.2.3>"])
        self.assertEqual(ok.code, 200)

    async def test_subscriberOverride(self) -> None:
        """bob's maxContacts = 1 overrides the configured 2."""
        await self.register("bob", cseq=1, contacts=["<sip:bob@192.0.2.1>"])
        self.clock.advance(1)
        await self.register("bob", cseq=2, contacts=["<sip:bob@192.0.2.2>"])
        self.assertEqual([b.contact for b in await self.bindings(f"bob@{DOMAIN}")], ["sip:bob@192.0.2.2"])

    async def test_tenThousandContacts(self) -> None:
        """10,000 contacts in one REGISTER -> 403 before parsing them; nothing stored."""
        contacts = ", ".join(f"<sip:a@10.{i // 256 % 256}.{i % 256}.1>" for i in range(10_000))
        data = registerBytes(contacts=[contacts], authorization=self.authorization())
        message = parseMessage(data, Limits(maxMessageSize=1 << 24, maxHeaders=1000, maxLineLength=1 << 24))
        response = await self.deliver(message)
        self.assertEqual(response.code, 403)
        self.assertIn("more than 32 contacts in one request", response.reason)
        self.assertEqual(self.store.stats()["bindings"], 0)
        # just over the limit, on the wire
        response = await self.register(cseq=2, contacts=[f"<sip:a@192.0.2.{i}>" for i in range(1, 34)])
        self.assertEqual(response.code, 403)
        self.assertEqual(self.store.stats()["bindings"], 0)


class RejectionTests(RegistrarTestCase):
    async def test_domains(self) -> None:
        """Request-URI or To domain not served -> 404 (§21.4.4), before any challenge."""
        self.assertEqual((await self.deliver(registerBytes(ruri="sip:elsewhere.test"))).code, 404)
        self.assertEqual((await self.deliver(registerBytes(toDomain="elsewhere.test"))).code, 404)
        self.assertEqual((await self.deliver(registerBytes(ruri="tel:+123"))).code, 404)
        self.assertEqual((await self.deliver(registerBytes(user=""))).code, 400)
        self.assertEqual((await self.register(ruri="sip:alias.test")).code, 200)

    async def test_require(self) -> None:
        response = await self.deliver(registerBytes(headers=["Require: path, foo"]))
        self.assertEqual((response.code, response.getHeader("Unsupported")), (420, "foo"))

    async def test_malformedContact(self) -> None:
        """A malformed Contact -> 400 and the existing bindings stay as they were."""
        await self.register(cseq=1, contacts=["<sip:a@192.0.2.1>"])
        before = await self.bindings()
        for contact in ("<sip:a@bad host>", "<sip:a@192.0.2.2", "<sip:a@192.0.2.2>;;x", '"x <sip:a@192.0.2.2>'):
            response = await self.register(cseq=2, contacts=["<sip:a@192.0.2.3>", contact])
            self.assertEqual(response.code, 400, contact)
            self.assertIn("bad Contact", response.reason)
        self.assertEqual(await self.bindings(), before)

    async def test_usernameMustMatch(self) -> None:
        """bob may not register alice's AOR (403), unless configured; an unknown AOR is 404 after auth."""
        response = await self.register("alice", authorization=self.authorization("bob"))
        self.assertEqual(response.code, 403)
        self.assertEqual(await self.bindings(), [])
        self.makeRegistrar(username_must_match="no")
        self.assertEqual((await self.register("alice", authorization=self.authorization("bob"))).code, 200)
        self.assertEqual(len(await self.bindings()), 1)
        response = await self.register("nobody", authorization=self.authorization("bob"))
        self.assertEqual(response.code, 404)

    async def test_locationUnavailable(self) -> None:
        """A store failure mid-update -> 503 + Retry-After; the writes already made are undone."""
        failing = FailingStore(self.store)
        self.location = failing
        self.makeRegistrar()
        await self.register(cseq=1, contacts=["<sip:a@192.0.2.1>;expires=600", "<sip:a@192.0.2.2>"])
        before = await self.bindings()
        failing.failSave = failing.saves + 2
        response = await self.register(cseq=2, contacts=["<sip:a@192.0.2.1>;expires=100", "<sip:a@192.0.2.3>",
                                                         "<sip:a@192.0.2.2>;expires=0"])
        self.assertEqual((response.code, response.getHeader("Retry-After")), (503, "5"))
        self.assertEqual(await self.bindings(), before)
        failing.failLookup = PartitionUnavailable(1)
        self.assertEqual((await self.register(cseq=3)).code, 503)
        failing.failLookup = None
        self.assertEqual((await self.register(cseq=4)).code, 200)

    async def test_subscribersUnavailable(self) -> None:
        class Down:
            def getSubscriber(self, username: str, domain: str) -> Any:
                return defer.fail(DatabaseUnavailable("subscribers master", "get subscriber"))

        self.auth = DigestAuthenticator(Down(), SECRET, self.clock)
        self.makeRegistrar(retry_after="9")
        response = await self.register()
        self.assertEqual((response.code, response.getHeader("Retry-After")), (503, "9"))

    async def test_crashAnswers500(self) -> None:
        """A bug in a hook (overridden in a subclass) still gets the UA a final response."""
        broken: set[str] = set()

        class Buggy(Registrar):
            def onBindingsChanged(self, aor: str, bindings: list[Any]) -> None:
                if "onBindingsChanged" in broken:
                    raise RuntimeError("hook bug")

            def allowRegistration(self, request: Any, subscriber: Any, aor: str) -> bool:
                if "allowRegistration" in broken:
                    raise RuntimeError("hook bug")
                return super().allowRegistration(request, subscriber, aor)

        self.registrar = Buggy(RegistrarConfig(), self.store, self.auth, [DOMAIN], self.clock)
        self.transports = FakeTransportService(self.clock)
        self.layer = TransactionLayer(self.transports, self.clock, user=self.registrar)
        broken.add("onBindingsChanged")
        self.assertEqual((await self.register()).code, 200)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

        broken.add("allowRegistration")
        self.assertEqual((await self.register(cseq=2)).code, 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class HookTests(RegistrarTestCase):
    async def test_hooks(self) -> None:
        changes: list[tuple[str, list[str]]] = []

        class Custom(Registrar):
            def onBindingsChanged(self, aor: str, bindings: list[Any]) -> None:
                changes.append((aor, [b.contact for b in bindings]))

            def allowRegistration(self, request: Any, subscriber: Any, aor: str) -> bool:
                return request.getHeader("User-Agent") != "voipgw-test/1" or subscriber.username != "carol"

        self.registrar = Custom(RegistrarConfig(), self.store, self.auth, [DOMAIN], self.clock)
        self.transports = FakeTransportService(self.clock)
        self.layer = TransactionLayer(self.transports, self.clock, user=self.registrar)
        await self.register(cseq=1)
        await self.register(cseq=2, contacts=[])  # a fetch changes nothing
        self.assertEqual(changes, [(f"alice@{DOMAIN}", ["sip:alice@192.0.2.7:5060"])])
        self.assertEqual((await self.register("carol", cseq=3)).code, 403)
        self.assertEqual(self.registrar.stats(), {"ok": 2, "rejected.403": 1})


class OpenRegistrarTests(RegistrarTestCase):
    authenticated = False

    async def test_noAuthenticator(self) -> None:
        response = await self.deliver(registerBytes("anyone"))
        self.assertEqual(response.code, 200)
        self.assertEqual(len(await self.bindings(f"anyone@{DOMAIN}")), 1)


class ConfigTests(TestCase):
    def test_defaults(self) -> None:
        config = RegistrarConfig.fromSection({})
        self.assertEqual(config, RegistrarConfig())
        self.assertEqual((config.minExpires, config.maxExpires, config.defaultExpires), (60, 3600, 3600))
        self.assertEqual((config.maxContacts, config.maxContactsPolicy), (0, "replace-oldest"))
        self.assertEqual(RegistrarConfig.fromSection({"max_expires": "1800"}).defaultExpires, 1800)

    def test_values(self) -> None:
        config = RegistrarConfig.fromSection({
            "min_expires": "30", "max_expires": "7200", "default_expires": "600", "max_contacts": "5",
            "max_contacts_policy": "Reject", "expires_jitter_percent": "10", "realm_policy": "request-uri",
            "username_must_match": "no", "retry_after": "30", "max_contacts_per_request": "8",
        })
        self.assertEqual(config, RegistrarConfig(30, 7200, 600, 5, "reject", 8, 10, "request-uri", False, 30))

    def test_errors(self) -> None:
        for section, message in (
            ({"min_expires": "x"}, "[registrar] min_expires: expected a whole number, got 'x'"),
            ({"min_expires": "0"}, "min_expires: 0 is outside 1.."),
            ({"min_expires": "100", "max_expires": "50"}, "max_expires (50) is below min_expires (100)"),
            ({"default_expires": "10"}, "default_expires (10) must lie within"),
            ({"max_contacts_policy": "drop"}, "max_contacts_policy: expected one of replace-oldest, reject"),
            ({"realm_policy": "any"}, "realm_policy"),
            ({"expires_jitter_percent": "75"}, "expires_jitter_percent: 75 is outside 0..50"),
            ({"username_must_match": "maybe"}, "expected yes or no"),
            ({"max_expire": "5"}, "unknown option 'max_expire'"),
        ):
            error = self.assertRaises(ConfigError, RegistrarConfig.fromSection, section)
            self.assertIn(message, str(error))


class KeyedLockTests(TestCase):
    """The per-AOR lock: exclusive per key, waiters in arrival order, free keys forgotten."""

    def test_order(self) -> None:
        from voipgw.registrar.service import _KeyedLock

        lock = _KeyedLock()
        self.assertIsNone(lock.acquire("a"))
        self.assertIsNone(lock.acquire("b"))  # another key is independent
        order: list[str] = []
        second, third = lock.acquire("a"), lock.acquire("a")
        assert second is not None and third is not None
        second.addCallback(lambda _: order.append("second"))
        third.addCallback(lambda _: order.append("third"))
        self.assertEqual(order, [])
        lock.release("a")
        self.assertEqual(order, ["second"])
        lock.release("a")
        self.assertEqual(order, ["second", "third"])
        lock.release("a")
        lock.release("b")
        self.assertEqual(len(lock), 0)
