# -*- test-case-name: tests.test_auth_digest -*-
"""
L{voipgw.auth.digest}: RFC 7616 vectors, challenges, stateless nonces on a
L{task.Clock}, replay protection, malformed credentials, the failure limit,
a secret shared between nodes; and the C{[auth]} section.

The subscriber store is a real L{SQLSubscriberStore} on SQLite in a
temporary directory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
import uuid
from typing import Any, Optional

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from voipgw.auth import AuthConfig, DigestAuthenticator, digestResponse, loadOrCreateSecret
from voipgw.errors import ConfigError
from voipgw.sip.address import DigestParams
from voipgw.sip.errors import SIPParseError
from voipgw.sip.message import Request, Response, parseMessage
from voipgw.subscribers import SubscriberConfig, SubscriberService, computeHA1

SECRET = b"0123456789abcdef-test-secret"
REALM = "example.test"


async def subscriberStore(testCase: TestCase, clock: Any, users: list[tuple[str, str, str, dict[str, Any]]]) -> Any:
    """A started SQLite subscriber store in a temp dir holding C{users}."""
    path = os.path.abspath(testCase.mktemp())
    config = SubscriberConfig.fromSection({"master": f"sqlite:///{path}/subscribers.sqlite"})
    service = SubscriberService.fromConfig(config, reactor, clock)
    await service.startService()
    testCase.addCleanup(service.stopService)
    for username, domain, password, settings in users:
        await service.store.addSubscriber(username, domain, password, **settings)
    return service.store


USERS = [
    ("alice", REALM, "alice-secret", {}),
    ("bob", REALM, "bob-secret", {}),
    ("carol", REALM, "carol-secret", {"enabled": False}),
    ("dave", "other.test", "dave-secret", {}),
]


def makeRequest(
    method: str = "REGISTER",
    uri: str = "sip:example.test",
    authorization: tuple[str, ...] = (),
    header: str = "Authorization",
    callId: Optional[str] = None,
) -> Request:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK{uuid.uuid4().hex}",
        "Max-Forwards: 70",
        "From: <sip:alice@example.test>;tag=1928301774",
        "To: <sip:alice@example.test>",
        f"Call-ID: {callId or uuid.uuid4().hex}",
        f"CSeq: 1 {method}",
        "Contact: <sip:alice@192.0.2.7:5060>",
    ]
    lines += [f"{header}: {a}" for a in authorization]
    message = parseMessage(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    message.validate()
    assert isinstance(message, Request)
    return message


def challenges(response: Response, proxy: bool = False) -> list[DigestParams]:
    name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    return [DigestParams.parse(v) for v in response.getHeaderValues(name)]


def credentials(
    challenge: DigestParams,
    username: str = "alice",
    password: str = "alice-secret",
    method: str = "REGISTER",
    uri: str = "sip:example.test",
    nc: int = 1,
    cnonce: str = "0a4f113b",
    realm: Optional[str] = None,
    drop: tuple[str, ...] = (),
    **override: Optional[str],
) -> str:
    """An Authorization value answering C{challenge} (fields overridable or dropped)."""
    algorithm = challenge.params.get("algorithm", "MD5")
    realm = realm if realm is not None else challenge.params["realm"]
    ha1 = computeHA1(username, realm, password, algorithm)
    ncText = f"{nc:08x}"
    params = {
        "username": username,
        "realm": realm,
        "nonce": challenge.params["nonce"],
        "uri": uri,
        "response": digestResponse(algorithm, ha1, challenge.params["nonce"], ncText, cnonce, "auth", method, uri),
        "algorithm": algorithm,
        "qop": "auth",
        "nc": ncText,
        "cnonce": cnonce,
    }
    for key in drop:
        params.pop(key, None)
    for key, value in override.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    quoted = ("username", "realm", "nonce", "uri", "response", "cnonce")
    return DigestParams("Digest", params).format(quoted=quoted)  # type: ignore[arg-type]


class VectorTests(TestCase):
    """RFC 7616 §3.9.1: the published MD5 and SHA-256 examples."""

    NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
    CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"

    def test_md5(self) -> None:
        ha1 = computeHA1("Mufasa", "http-auth@example.org", "Circle of Life", "MD5")
        self.assertEqual(
            digestResponse("MD5", ha1, self.NONCE, "00000001", self.CNONCE, "auth", "GET", "/dir/index.html"),
            "8ca523f5e9506fed4657c9700eebdbec",
        )

    def test_sha256(self) -> None:
        ha1 = computeHA1("Mufasa", "http-auth@example.org", "Circle of Life", "SHA-256")
        self.assertEqual(
            digestResponse("SHA-256", ha1, self.NONCE, "00000001", self.CNONCE, "auth", "GET", "/dir/index.html"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        )

    def test_sess(self) -> None:
        """-sess re-hashes HA1 with the nonce and cnonce (RFC 7616 §3.4.2)."""
        ha1 = computeHA1("Mufasa", "http-auth@example.org", "Circle of Life", "MD5")
        sessHA1 = hashlib.md5(f"{ha1}:{self.NONCE}:{self.CNONCE}".encode()).hexdigest()
        self.assertEqual(
            digestResponse("MD5-sess", ha1, self.NONCE, "00000001", self.CNONCE, "auth", "GET", "/x"),
            digestResponse("MD5", sessHA1, self.NONCE, "00000001", self.CNONCE, "auth", "GET", "/x"),
        )


class CredentialsParsingTests(TestCase):
    """
    L{digest._parseCredentials}: its fast path for the usual form gives
    what L{DigestParams.parse} gives, and every other form falls back to
    the general parsers with the same result or error.
    """

    USUAL = [
        # sipp's form: no spaces, unquoted nc, qop and algorithm
        'Digest username="alice",realm="example.test",cnonce="6b8b4567",nc=00000001,qop=auth,'
        'uri="sip:example.test",nonce="AAABi8_ojAA-abc_def",response="0123abcd",algorithm=MD5',
        # spaces after the commas and around '=', other names and cases
        'Digest username="alice", realm="example.test", Nonce ="n", uri="sip:a@b;x=y", '
        'response="r" , algorithm=SHA-256 , qop= auth, nc=0000000a\t,\tcnonce="c", opaque=""',
        'Digest  Username="a b", X-Ext.1=tok~en, realm="\u00e9t\u00e9"\t',
        'Digest username="alice", uri="sip:a,b@example.test"',  # comma inside quotes
    ]
    FALLBACK = [
        'digest username="alice", realm="example.test"',  # scheme in lower case
        ' Digest username="alice"',  # leading space
        'Digest username= "alice"',  # space before a quoted value
        'Digest username="al\\"ice", realm="r"',  # escaped quote
        'Digest username="alice",, realm="r"',  # empty item
        'Digest username="alice", realm="r",',  # trailing comma
        'Digest username="a\u00a0b"',  # a quoted non-printable character
        'Digest username="a\x01b"',  # a quoted control character
        'Digest username=al\u00e9',  # a non-token value
    ]
    ERRORS = [
        'Digest username="alice", realm="r", Realm="s"',  # duplicate
        'Digest username="alice", realm',
        'Digest user name="alice"',
        'Digest username="a"b"',
        'Digest username="a" realm="b"',
        'Digest username=a b',
        'Digest username="unterminated',
    ]

    def test_usualForm(self) -> None:
        from voipgw.auth.digest import _parseCredentials, _parseUsual

        for value in self.USUAL:
            fast = _parseUsual(value)
            self.assertIsNotNone(fast, value)
            assert fast is not None
            general = DigestParams.parse(value)
            self.assertEqual((fast.scheme, fast.params), (general.scheme, general.params), value)
            parsed = _parseCredentials(value)
            self.assertEqual((parsed.scheme, parsed.params), (general.scheme, general.params), value)
        params = _parseCredentials(self.USUAL[1]).params
        self.assertEqual(params["nonce"], "n")
        self.assertEqual(params["uri"], "sip:a@b;x=y")
        self.assertEqual(params["opaque"], "")
        self.assertEqual(params["qop"], "auth")
        self.assertEqual(params["nc"], "0000000a")
        params = _parseCredentials(self.USUAL[2]).params
        self.assertEqual(params, {"username": "a b", "x-ext.1": "tok~en", "realm": "\u00e9t\u00e9"})
        self.assertEqual(_parseCredentials(self.USUAL[3]).params["uri"], "sip:a,b@example.test")

    def test_fallback(self) -> None:
        """Other forms take the general parsers, with their result."""
        from voipgw.auth.digest import _parseCredentials, _parseUsual

        for value in self.FALLBACK:
            self.assertIsNone(_parseUsual(value), value)
            try:
                general = DigestParams.parse(value)
            except SIPParseError as e:
                with self.assertRaises(SIPParseError, msg=value) as caught:
                    _parseCredentials(value)
                self.assertEqual(str(caught.exception), str(e))
                continue
            parsed = _parseCredentials(value)
            self.assertEqual((parsed.scheme, parsed.params), (general.scheme, general.params), value)
        # A tab after the scheme: the regex fast path takes it (unlike
        # DigestParams.parse), with everything up to the first space as the
        # scheme, so credentials() ignores it as not Digest.  Kept as it was.
        value = 'Digest\tusername="alice"'
        self.assertIsNone(_parseUsual(value))
        parsed = _parseCredentials(value)
        self.assertEqual((parsed.scheme, parsed.params), (value, {"username": "alice"}))

    def test_errors(self) -> None:
        from voipgw.auth.digest import _parseCredentials, _parseUsual

        for value in self.ERRORS:
            self.assertIsNone(_parseUsual(value), value)
            self.assertRaises(SIPParseError, _parseCredentials, value)
        with self.assertRaises(SIPParseError) as caught:
            _parseCredentials(self.ERRORS[0])
        self.assertIn("duplicate authentication parameter 'realm'", str(caught.exception))


class NonceFormatTests(TestCase):
    """
    The nonce is base64url(issued-ms (8 bytes, big-endian) || random (8) ||
    HMAC-SHA256(secret, first 16 bytes || lower-case realm)[:16]), unpadded.
    """

    def check(self, secret: bytes, realm: str) -> None:
        clock = task.Clock()
        clock.advance(1_700_000_123.4567)
        auth = DigestAuthenticator(None, secret, clock)
        for _ in range(3):
            nonce = auth.makeNonce(realm)
            self.assertEqual(len(nonce), 43)
            raw = base64.urlsafe_b64decode(nonce + "=")
            head = raw[:16]
            self.assertEqual(int.from_bytes(head[:8], "big"), 1_700_000_123_456)
            mac = hmac.new(secret, head + realm.lower().encode("utf-8"), hashlib.sha256).digest()[:16]
            self.assertEqual(raw[16:], mac)
            self.assertEqual(auth.nonceIssued(nonce, realm), 1_700_000_123.456)
            self.assertEqual(auth.nonceIssued(nonce, realm.upper()), 1_700_000_123.456)
            self.assertIsNone(auth.nonceIssued(nonce, realm + "x"))
            # (a middle character: the last one carries 2 bits that decoding ignores)
            forged = nonce[:30] + ("A" if nonce[30] != "A" else "B") + nonce[31:]
            self.assertIsNone(auth.nonceIssued(forged, realm))
            self.assertIsNone(auth.nonceIssued(nonce[:-1] + "\u00e9", realm))
            self.assertIsNone(auth.nonceIssued(nonce + "A", realm))

    def test_shortSecret(self) -> None:
        self.check(b"0123456789abcdef", "Example.TEST")

    def test_blockSizeSecret(self) -> None:
        self.check(bytes(range(64)), "example.test")

    def test_longSecret(self) -> None:
        """A secret longer than SHA-256's block is hashed first (RFC 2104)."""
        self.check(bytes(range(200)), "\u00e9xample.test")


class AuthenticatorTests(TestCase):
    async def setUp(self) -> None:  # type: ignore[override]
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.store = await subscriberStore(self, self.clock, USERS)
        self.auth = DigestAuthenticator(self.store, SECRET, self.clock)

    async def challengeFor(self, algorithm: str = "SHA-256", proxy: bool = False, realm: str = REALM) -> DigestParams:
        result = await self.auth.authenticate(makeRequest(), realm, proxy=proxy)
        self.assertFalse(result.ok)
        assert result.response is not None
        self.assertEqual(result.response.code, 407 if proxy else 401)
        [chosen] = [c for c in challenges(result.response, proxy) if c.params["algorithm"] == algorithm]
        return chosen

    async def check(self, authorization: str, proxy: bool = False, realm: str = REALM, uri: str = "sip:example.test"):  # type: ignore[no-untyped-def]
        header = "Proxy-Authorization" if proxy else "Authorization"
        return await self.auth.authenticate(
            makeRequest(uri=uri, authorization=(authorization,), header=header), realm, proxy=proxy
        )

    async def test_challenge(self) -> None:
        """Without credentials: 401 with SHA-256 then MD5, one nonce, qop=auth, the realm, a To tag."""
        result = await self.auth.authenticate(makeRequest(), REALM, toTag="tt1")
        self.assertEqual((result.ok, result.reason, result.stale), (False, "no-credentials", False))
        assert result.response is not None
        self.assertEqual(result.response.code, 401)
        self.assertEqual(result.response.toAddress.tag, "tt1")
        found = challenges(result.response)
        self.assertEqual([c.params["algorithm"] for c in found], ["SHA-256", "MD5"])
        for c in found:
            self.assertEqual(c.scheme, "Digest")
            self.assertEqual((c.params["realm"], c.params["qop"]), (REALM, "auth"))
            self.assertNotIn("stale", c.params)
        self.assertEqual(found[0].params["nonce"], found[1].params["nonce"])
        # every challenge has a new nonce
        again = await self.auth.authenticate(makeRequest(), REALM)
        assert again.response is not None
        self.assertNotEqual(challenges(again.response)[0].params["nonce"], found[0].params["nonce"])

    async def test_sha256(self) -> None:
        result = await self.check(credentials(await self.challengeFor("SHA-256")))
        self.assertTrue(result.ok, result.reason)
        self.assertEqual(result.subscriber.username, "alice")
        self.assertIsNone(result.response)

    async def test_md5(self) -> None:
        result = await self.check(credentials(await self.challengeFor("MD5")))
        self.assertTrue(result.ok, result.reason)

    async def test_md5WithoutAlgorithmParameter(self) -> None:
        """RFC 2617: no algorithm parameter means MD5."""
        result = await self.check(credentials(await self.challengeFor("MD5"), algorithm=None))
        self.assertTrue(result.ok, result.reason)

    async def test_caseInsensitiveUsername(self) -> None:
        """The HA1 was computed over the stored (lower-case) username; 'Alice' does not verify as 'alice'."""
        result = await self.check(credentials(await self.challengeFor(), username="Alice"))
        self.assertFalse(result.ok)

    async def test_algorithmNotOffered(self) -> None:
        auth = DigestAuthenticator(self.store, SECRET, self.clock, algorithms=("SHA-256",))
        challenge = await self.challengeFor("MD5")
        result = await auth.authenticate(makeRequest(authorization=(credentials(challenge),)), REALM)
        self.assertEqual((result.ok, result.reason), (False, "algorithm"))
        assert result.response is not None
        self.assertEqual([c.params["algorithm"] for c in challenges(result.response)], ["SHA-256"])

    async def test_proxy(self) -> None:
        """407 / Proxy-Authenticate / Proxy-Authorization for the routing service."""
        challenge = await self.challengeFor(proxy=True)
        result = await self.check(credentials(challenge, method="REGISTER"), proxy=True)
        self.assertTrue(result.ok, result.reason)
        # Authorization is not Proxy-Authorization
        value = credentials(await self.challengeFor(proxy=True))
        result = await self.auth.authenticate(makeRequest(authorization=(value,)), REALM, proxy=True)
        self.assertEqual(result.reason, "no-credentials")
        assert result.response is not None
        self.assertEqual(result.response.code, 407)

    async def test_wrongPassword(self) -> None:
        """A wrong password gets a fresh challenge, not stale, no subscriber."""
        challenge = await self.challengeFor()
        result = await self.check(credentials(challenge, password="guess"))
        self.assertEqual((result.ok, result.reason, result.stale), (False, "wrong-response", False))
        assert result.response is not None
        self.assertEqual(result.response.code, 401)
        self.assertIsNone(result.subscriber)
        self.assertNotEqual(challenges(result.response)[0].params["nonce"], challenge.params["nonce"])

    async def test_unknownUserLooksLikeWrongPassword(self) -> None:
        result = await self.check(credentials(await self.challengeFor(), username="mallory"))
        self.assertEqual((result.ok, result.stale), (False, False))
        assert result.response is not None
        self.assertEqual(result.response.code, 401)

    async def test_disabled(self) -> None:
        result = await self.check(credentials(await self.challengeFor(), username="carol", password="carol-secret"))
        self.assertEqual((result.ok, result.reason), (False, "disabled"))
        assert result.response is not None
        self.assertEqual(result.response.code, 403)

    async def test_stale(self) -> None:
        """Past its lifetime a nonce with right credentials gets stale=true; wrong ones do not."""
        challenge = await self.challengeFor()
        self.clock.advance(299)
        fresh = await self.check(credentials(challenge))
        self.assertTrue(fresh.ok)
        challenge = await self.challengeFor()
        self.clock.advance(301)
        result = await self.check(credentials(challenge))
        self.assertEqual((result.ok, result.reason, result.stale), (False, "stale", True))
        assert result.response is not None
        self.assertEqual({c.params.get("stale") for c in challenges(result.response)}, {"true"})
        wrong = await self.check(credentials(challenge, password="nope"))
        self.assertEqual((wrong.ok, wrong.stale), (False, False))

    async def test_futureNonce(self) -> None:
        """A nonce minted by a node whose clock is far ahead is refused."""
        ahead = task.Clock()
        ahead.advance(self.clock.seconds() + 3600)
        other = DigestAuthenticator(self.store, SECRET, ahead)
        result = await other.authenticate(makeRequest(), REALM)
        assert result.response is not None
        result = await self.check(credentials(challenges(result.response)[0]))
        self.assertEqual((result.ok, result.reason), (False, "bad-nonce"))

    async def test_nonceForAnotherRealm(self) -> None:
        """A nonce minted for other.test does not verify for example.test: fresh challenge."""
        challenge = await self.challengeFor(realm="other.test")
        result = await self.check(credentials(challenge, realm=REALM))
        self.assertEqual((result.ok, result.reason, result.stale), (False, "bad-nonce", False))
        assert result.response is not None
        self.assertEqual(result.response.code, 401)

    async def test_credentialsForAnotherRealm(self) -> None:
        """Credentials for another realm only: a challenge for ours."""
        challenge = await self.challengeFor(realm="other.test")
        result = await self.check(credentials(challenge, username="dave", password="dave-secret"))
        self.assertEqual(result.reason, "no-credentials")
        # and they do verify in their own realm
        result = await self.check(credentials(challenge, username="dave", password="dave-secret"), realm="other.test")
        self.assertTrue(result.ok, result.reason)

    async def test_forgedNonce(self) -> None:
        challenge = await self.challengeFor()
        nonce = challenge.params["nonce"]
        forged = ("A" if nonce[0] != "A" else "B") + nonce[1:]
        for bad in (forged, "abc", nonce + "x", "!" * 43):
            result = await self.check(credentials(challenge, nonce=bad))
            self.assertEqual((result.ok, result.reason), (False, "bad-nonce"), bad)

    async def test_replay(self) -> None:
        """The same nc twice, or a lower nc, is refused; a higher one is accepted."""
        challenge = await self.challengeFor()
        self.assertTrue((await self.check(credentials(challenge, nc=1))).ok)
        replay = await self.check(credentials(challenge, nc=1))
        self.assertEqual((replay.ok, replay.reason), (False, "replay"))
        self.assertTrue((await self.check(credentials(challenge, nc=5, cnonce="x1"))).ok)
        lower = await self.check(credentials(challenge, nc=3, cnonce="x2"))
        self.assertEqual((lower.ok, lower.reason), (False, "replay"))
        self.assertTrue((await self.check(credentials(challenge, nc=6, cnonce="x3"))).ok)
        zero = await self.check(credentials(await self.challengeFor(), nc=0))
        self.assertFalse(zero.ok)

    async def test_replayTableBoundedAndExpires(self) -> None:
        """Evicting a nonce from the bounded table never reopens a replay; expired entries leave."""
        self.auth.maxTrackedNonces = 2
        first = await self.challengeFor()
        self.assertTrue((await self.check(credentials(first))).ok)
        self.clock.advance(1)
        for _ in range(2):
            self.assertTrue((await self.check(credentials(await self.challengeFor()))).ok)
        self.assertEqual(self.auth.stats()["trackedNonces"], 2)
        again = await self.check(credentials(first, nc=2))
        self.assertEqual((again.ok, again.reason), (False, "replay"))
        self.clock.advance(400)
        self.assertTrue((await self.check(credentials(await self.challengeFor()))).ok)
        self.assertEqual(self.auth.stats()["trackedNonces"], 1)

    async def test_malformed(self) -> None:
        """Missing or duplicated fields, a bad nc, qop or uri: 400 with the reason."""
        challenge = await self.challengeFor()
        cases = {
            "lack username": credentials(challenge, drop=("username",)),
            "lack nonce": credentials(challenge, drop=("nonce",)),
            "lack uri": credentials(challenge, drop=("uri",)),
            "lack response": credentials(challenge, drop=("response",)),
            "lack qop": credentials(challenge, drop=("qop",)),
            "lack cnonce": credentials(challenge, drop=("cnonce",)),
            "lack nonce, response": credentials(challenge, drop=("nonce", "response")),
            "nc must be": credentials(challenge, drop=("nc",)) + ", nc=1",
            "nc must be ": credentials(challenge, drop=("nc",)) + ", nc=0000000g",
            "only qop=auth": credentials(challenge, qop="auth-int"),
            "differs from the Request-URI": credentials(challenge, uri="sip:elsewhere.test"),
            "malformed digest response": credentials(challenge, response="abc"),
            "duplicate authentication parameter": credentials(challenge) + ', nc=00000002',
            "bad authentication": 'Digest username="alice", realm',
        }
        for expected, value in cases.items():
            if value is None:
                continue
            result = await self.check(value)
            self.assertEqual((result.ok, result.reason), (False, "malformed"), expected)
            assert result.response is not None
            self.assertEqual(result.response.code, 400, expected)
            self.assertIn(expected.strip(), result.response.reason or "", expected)
        # two Authorization headers for the same realm
        request = makeRequest(authorization=(credentials(challenge), credentials(challenge, nc=2)))
        result = await self.auth.authenticate(request, REALM)
        assert result.response is not None
        self.assertEqual((result.response.code, result.reason), (400, "malformed"))

    async def test_equivalentURI(self) -> None:
        """The digest uri may be written differently but equivalently (§19.1.4)."""
        challenge = await self.challengeFor()
        result = await self.check(credentials(challenge, uri="sip:EXAMPLE.test"), uri="sip:example.test")
        self.assertTrue(result.ok, result.reason)

    async def test_sqlMetacharacters(self) -> None:
        """Quotes and SQL in the username find nobody, create nothing and look like a wrong password."""
        before = await self.store.listSubscribers()
        for username in ("alice' OR '1'='1", "x'; DROP TABLE subscribers; --", 'a"b\\', "%", "alice%"):
            challenge = await self.challengeFor()
            result = await self.check(credentials(challenge, username=username))
            self.assertFalse(result.ok, username)
            assert result.response is not None
            self.assertEqual(result.response.code, 401, username)
        after = await self.store.listSubscribers()
        self.assertEqual([s.aor for s in after], [s.aor for s in before])

    async def test_failuresThen403(self) -> None:
        """After max_failures wrong attempts from one source within the window: 403, even with the right password."""
        auth = DigestAuthenticator(self.store, SECRET, self.clock, maxFailures=3, failureWindow=60)

        async def attempt(password: str, source: str = "192.0.2.7") -> Any:
            first = await auth.authenticate(makeRequest(), REALM)
            assert first.response is not None
            value = credentials(challenges(first.response)[0], password=password)
            return await auth.authenticate(makeRequest(authorization=(value,)), REALM, source=source)

        for _ in range(3):
            self.assertEqual((await attempt("wrong")).response.code, 401)
        blocked = await attempt("alice-secret")
        self.assertEqual((blocked.ok, blocked.reason, blocked.response.code), (False, "blocked", 403))
        # another source is not blocked
        self.assertTrue((await attempt("alice-secret", source="192.0.2.99")).ok)
        self.clock.advance(61)
        self.assertTrue((await attempt("alice-secret")).ok)

    async def test_sharedSecret(self) -> None:
        """Nodes of a site share the secret: a nonce from one verifies on the other; not with another secret."""
        other = DigestAuthenticator(self.store, SECRET, self.clock)
        stranger = DigestAuthenticator(self.store, b"another-secret-of-16-bytes", self.clock)
        value = credentials(await self.challengeFor())
        self.assertTrue((await other.authenticate(makeRequest(authorization=(value,)), REALM)).ok)
        result = await stranger.authenticate(makeRequest(authorization=(value,)), REALM)
        self.assertEqual((result.ok, result.reason), (False, "bad-nonce"))

    def test_constructorChecks(self) -> None:
        self.assertRaises(ValueError, DigestAuthenticator, self.store, b"short", self.clock)
        self.assertRaises(ValueError, DigestAuthenticator, self.store, SECRET, self.clock, algorithms=("SHA-512",))
        self.assertRaises(ValueError, DigestAuthenticator, self.store, SECRET, self.clock, algorithms=())


class AuthConfigTests(TestCase):
    def test_defaults(self) -> None:
        config = AuthConfig.fromSection({})
        self.assertEqual(config, AuthConfig())
        self.assertIsNone(config.secret)
        self.assertEqual(config.algorithms, ("SHA-256", "MD5"))

    def test_values(self) -> None:
        config = AuthConfig.fromSection({
            "secret": "  a-long-enough-site-secret ", "nonce_lifetime": "120", "algorithms": "md5",
            "max_failures": "0", "failure_window": "30",
        })
        self.assertEqual(config.secret, b"a-long-enough-site-secret")
        self.assertEqual((config.nonceLifetime, config.algorithms, config.maxFailures, config.failureWindow),
                         (120.0, ("MD5",), 0, 30.0))
        self.assertEqual(config.resolveSecret("/nonexistent"), b"a-long-enough-site-secret")

    def test_errors(self) -> None:
        for section, message in (
            ({"secret": "short"}, "[auth] secret: must be at least 16 bytes (got 5)"),
            ({"algorithms": "SHA-512"}, "unsupported algorithm 'SHA-512'"),
            ({"algorithms": "MD5, md5"}, "MD5 listed twice"),
            ({"algorithms": " , "}, "at least one"),
            ({"nonce_lifetime": "soon"}, "[auth] nonce_lifetime: expected a number"),
            ({"nonce_lifetime": "0"}, "outside 5..86400"),
            ({"max_failures": "-1"}, "max_failures"),
            ({"secrett": "x"}, "unknown option 'secrett'"),
        ):
            error = self.assertRaises(ConfigError, AuthConfig.fromSection, section)
            self.assertIn(message, str(error))

    def test_generatedSecret(self) -> None:
        """Without a secret a random one is created once in the data dir (0600) and reused."""
        directory = self.mktemp()
        first = AuthConfig().resolveSecret(directory)
        self.assertGreaterEqual(len(first), 32)
        path = os.path.join(directory, "auth-secret")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(loadOrCreateSecret(directory), first)
        self.assertNotEqual(loadOrCreateSecret(self.mktemp()), first)
        with open(path, "wb") as f:
            f.write(b"tiny\n")
        self.assertRaises(ConfigError, loadOrCreateSecret, directory)

    async def test_buildAuthenticator(self) -> None:
        clock = task.Clock()
        store = await subscriberStore(self, clock, [])
        auth = AuthConfig.fromSection({"secret": "x" * 16, "algorithms": "MD5", "max_failures": "2"}).buildAuthenticator(
            store, clock, self.mktemp()
        )
        self.assertEqual((auth.algorithms, auth.maxFailures), (("MD5",), 2))
