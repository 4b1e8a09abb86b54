# -*- test-case-name: tests.test_auth_digest -*-
"""
SIP digest authentication (RFC 7616, RFC 2617, RFC 3261 §22) with
stateless nonces.

Design
======

A nonce is C{base64url(issued-ms (8 bytes) || random (8) || mac (16))}
where C{mac} is HMAC-SHA256 over the first 16 bytes and the realm, keyed
with the site secret.  Any node of the site holding the same secret can
verify any other node's nonce without shared state, a nonce minted for one
realm does not verify for another, and a nonce older than
C{nonceLifetime} is answered with a fresh challenge carrying
C{stale=true} (when the rest of the credentials were right).

Replay protection is the one piece of state: the highest nonce-count seen
per nonce, in an insertion-ordered dict bounded by C{maxTrackedNonces}.
Entries whose nonce has expired are dropped from the front as time goes on
(no timer, no scan: nonces are first used in roughly issue order).  When the
bound forces an entry out, the issue time of the evicted nonce becomes a
floor: an untracked nonce issued at or before it is treated as stale, so an
eviction can never reopen a replay window.  Counts are per node; a client
that moves between nodes with the same nonce is only protected per node.

Failures (a wrong response, an unknown user) are counted per
C{(username@realm, source host)} within C{failureWindow}; at
C{maxFailures} the authenticator answers C{403} until the window passes.
A wrong password or an unknown user gets the same fresh challenge, so the
existence of a subscriber is never revealed.

Only the stored HA1 (MD5 or SHA-256, realm = domain) is used; responses
are compared with L{hmac.compare_digest}.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Final, Optional

from twisted.logger import Logger

from voipgw.sip.address import DigestParams
from voipgw.sip.errors import SIPParseError
from voipgw.sip.message import Request, Response, responseTo
from voipgw.sip.uri import URI

__all__ = ["AuthResult", "DigestAuthenticator", "SUPPORTED_ALGORITHMS", "digestResponse"]

_HASHES: dict[str, Callable[[bytes], Any]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}

#: Algorithms this module can verify (the C{-sess} variants are verified
#: but never offered).
SUPPORTED_ALGORITHMS = ("SHA-256", "MD5")

_REQUIRED = ("username", "realm", "nonce", "uri", "response")
_HEX = frozenset("0123456789abcdefABCDEF")
_NONCE_RAW = 32
_NONCE_TEXT = 43  # base64url of 32 bytes, unpadded
#: The common form of credentials, parsed with one regex: token names,
#: token or quoted values without escapes or control characters.  Anything
#: else goes through L{DigestParams.parse} (same result for what both accept).
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_PARAM = rf'({_TOKEN})[ \t]*=[ \t]*(?:"([^"\\\x00-\x1f\x7f]*)"|({_TOKEN}))'
_FAST_CREDENTIALS = re.compile(rf"[ \t]*Digest[ \t]+{_PARAM}(?:[ \t]*,[ \t]*{_PARAM})*[ \t]*", re.IGNORECASE)
_FAST_PARAM = re.compile(_PARAM)


_TOKEN_RE = re.compile(_TOKEN)
#: Parameter names as clients usually spell them (lower case already).
_NAMES: Final = {
    name: name
    for name in ("username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "opaque", "qop", "nc")
}


def _isToken(text: str) -> bool:
    # ASCII letters and digits are token characters; anything else asks the regex
    return (text.isascii() and text.isalnum()) or _TOKEN_RE.fullmatch(text) is not None


def _parseUsual(value: str) -> Optional[DigestParams]:
    """
    The credentials as clients usually send them, scanned with C{find}
    instead of a regex pass: C{Digest } then comma-separated C{name=value}
    items, each value a token or a quoted string (opening right after the
    C{=}) holding no backslash or unprintable character, spaces and tabs
    allowed around names, token values and commas.  C{None} for anything
    else (other spacing or case of the scheme, an empty item, a duplicate,
    ...), which then goes through the general parsers: what this accepts
    is a subset of what L{_FAST_CREDENTIALS} accepts, with the same result.
    """
    if not value.startswith("Digest "):
        return None
    params: dict[str, str] = {}
    n = len(value)
    pos = 7
    while True:
        eq = value.find("=", pos)
        if eq < 0:
            return None
        name = value[pos:eq]
        key = _NAMES.get(name)
        if key is None:
            name = name.strip(" \t")
            key = _NAMES.get(name)
            if key is None:
                if not _isToken(name):
                    return None
                key = name.lower()
        if value[eq + 1:eq + 2] == '"':
            close = value.find('"', eq + 2)
            if close < 0:
                return None
            text = value[eq + 2:close]
            if "\\" in text or not text.isprintable():
                return None
            comma = value.find(",", close + 1)
            if comma < 0:
                comma = n
            if comma != close + 1 and value[close + 1:comma].strip(" \t"):
                return None
        else:
            comma = value.find(",", eq + 1)
            if comma < 0:
                comma = n
            text = value[eq + 1:comma]
            if not _isToken(text):
                text = text.strip(" \t")
                if not _isToken(text):
                    return None
        if key in params:
            return None
        params[key] = text
        if comma == n:
            return DigestParams("Digest", params)
        pos = comma + 1


def _parseCredentials(value: str) -> DigestParams:
    """L{DigestParams.parse}, with fast paths for the usual Digest form."""
    usual = _parseUsual(value)
    if usual is not None:
        return usual
    if _FAST_CREDENTIALS.fullmatch(value) is not None:
        params: dict[str, str] = {}
        for name, quoted, token in _FAST_PARAM.findall(value[value.lower().index("digest") + 6:]):
            name = name.lower()
            if name in params:
                raise SIPParseError(f"duplicate authentication parameter {name[:40]!r}")
            params[name] = token or quoted
        return DigestParams(value.strip(" \t").partition(" ")[0], params)
    return DigestParams.parse(value)


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_URLSAFE_ENCODE = bytes.maketrans(b"+/", b"-_")
_URLSAFE_DECODE = bytes.maketrans(b"-_", b"+/")

#: Random bytes are read from the OS this many at a time (one syscall per
#: 512 nonces instead of one each).
_RANDOM_CHUNK = 8 * 512

#: Seconds a nonce may appear to come from the future (clock skew between
#: the nodes of a site).
CLOCK_SKEW = 30.0


def _h(algorithm: str, text: str) -> str:
    return _HASHES[algorithm](text.encode("utf-8", "surrogateescape")).hexdigest()  # type: ignore[no-any-return]


def digestResponse(
    algorithm: str, ha1: str, nonce: str, nc: str, cnonce: str, qop: str, method: str, uri: str
) -> str:
    """
    The C{response} value of RFC 7616 §3.4.1 for C{qop=auth}:
    C{KD(HA1, nonce:nc:cnonce:qop:HA2)} with C{HA2 = H(method:uri)}.
    C{algorithm} is C{MD5}, C{SHA-256} or their C{-sess} forms (then
    C{HA1} is re-hashed with the nonce and cnonce, §3.4.2).
    """
    base = algorithm[:-5] if algorithm.endswith("-sess") else algorithm
    if algorithm.endswith("-sess"):
        ha1 = _h(base, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _h(base, f"{method}:{uri}")
    return _h(base, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@dataclass
class AuthResult:
    """
    The outcome of L{DigestAuthenticator.authenticate}.

    @ivar ok: the credentials are valid and fresh for an enabled subscriber.
    @ivar subscriber: the authenticated L{voipgw.subscribers.Subscriber}
        (set when C{ok}; also set for a disabled subscriber).
    @ivar response: when not C{ok}, the response to send: a 401/407
        challenge, a 400 for malformed credentials, or a 403.
    @ivar reason: a short word for logs and counters (C{"ok"},
        C{"no-credentials"}, C{"wrong-response"}, C{"stale"},
        C{"replay"}, C{"malformed"}, C{"blocked"}, C{"disabled"}, ...).
    @ivar stale: the challenge carries C{stale=true}.
    """

    ok: bool
    subscriber: Any = None
    response: Optional[Response] = None
    reason: str = ""
    stale: bool = False


class DigestAuthenticator:
    """
    Verifies digest credentials against an L{ISubscriberStore} and builds
    challenges.

    @param subscribers: an L{ISubscriberStore} (C{getSubscriber(user,
        domain)} returning a Deferred).
    @param secret: the site secret (at least 16 bytes), the same on every
        node of a site.
    @param clock: C{seconds()} provider (the reactor or C{task.Clock}).
    @param nonceLifetime: seconds a nonce stays fresh.
    @param algorithms: algorithms offered, in order of preference (one
        challenge header each).
    @param maxFailures: failed attempts per username/realm and source host
        within C{failureWindow} seconds before answering C{403}; 0 disables.
    """

    log = Logger(namespace="voipgw.auth.digest.DigestAuthenticator")

    #: Bound of the nonce-count table (entries, ~150 bytes each).
    maxTrackedNonces = 200_000
    #: Bound of the failure table.
    maxTrackedFailures = 100_000

    def __init__(
        self,
        subscribers: Any,
        secret: bytes,
        clock: Any,
        nonceLifetime: float = 300.0,
        algorithms: tuple[str, ...] | list[str] = ("SHA-256", "MD5"),
        maxFailures: int = 5,
        failureWindow: float = 60.0,
    ) -> None:
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise ValueError("the digest secret must be at least 16 bytes")
        algorithms = tuple(a.upper() for a in algorithms)
        if not algorithms:
            raise ValueError("at least one digest algorithm is needed")
        for a in algorithms:
            if a not in _HASHES:
                raise ValueError(f"unsupported digest algorithm {a!r} (use SHA-256, MD5)")
        if nonceLifetime <= 0:
            raise ValueError("nonce lifetime must be positive")
        self.subscribers = subscribers
        self.clock = clock
        self.nonceLifetime = float(nonceLifetime)
        self.algorithms = algorithms
        self.maxFailures = int(maxFailures)
        self.failureWindow = float(failureWindow)
        # HMAC-SHA256 (RFC 2104) with the two padded-key states hashed
        # once: signing copies them (two C calls each) instead of going
        # through hmac.HMAC's Python methods.
        key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))
        # realm -> its lower-cased UTF-8 bytes, as signed
        self._realms: dict[str, bytes] = {}
        # nonce -> (issued, highest nc)
        self._counts: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._evictedBefore = float("-inf")
        # (identity, host) -> (window start, failures)
        self._failures: dict[tuple[str, str], tuple[float, int]] = {}
        self._random = b""
        self._randomAt = 0
        # (realm, proxy, stale) -> [(header name, text before the nonce, text after)]
        self._templates: dict[tuple[str, bool, bool], list[tuple[str, str, str]]] = {}

    # -- nonces ------------------------------------------------------------

    def _sign(self, head: bytes, realm: str) -> bytes:
        """C{HMAC-SHA256(secret, head || lower(realm))[:16]}."""
        realmBytes = self._realms.get(realm)
        if realmBytes is None:
            realmBytes = realm.lower().encode("utf-8", "surrogateescape")
            if len(self._realms) >= 1024:  # bounded: realms come from requests
                self._realms.clear()
            self._realms[realm] = realmBytes
        inner = self._inner.copy()
        inner.update(head + realmBytes)
        outer = self._outer.copy()
        outer.update(inner.digest())
        mac: bytes = outer.digest()
        return mac[:16]

    def makeNonce(self, realm: str) -> str:
        """A fresh nonce for C{realm}, issued now."""
        at = self._randomAt
        if at + 8 > len(self._random):
            self._random, at = os.urandom(_RANDOM_CHUNK), 0
        self._randomAt = at + 8
        head = int(self.clock.seconds() * 1000).to_bytes(8, "big") + self._random[at:at + 8]
        # base64url of 32 bytes: 43 characters and one '=' of padding, dropped
        text = binascii.b2a_base64(head + self._sign(head, realm), newline=False)
        return text.translate(_URLSAFE_ENCODE)[:_NONCE_TEXT].decode("ascii")

    def nonceIssued(self, nonce: str, realm: str) -> Optional[float]:
        """The issue time of a genuine nonce for C{realm}, else C{None}."""
        if len(nonce) != _NONCE_TEXT:
            return None
        try:
            # what base64.urlsafe_b64decode(nonce + "=") does, without its wrappers
            raw = binascii.a2b_base64(nonce.encode("ascii").translate(_URLSAFE_DECODE) + b"=")
        except (binascii.Error, ValueError):  # ValueError: non-ASCII
            return None
        if len(raw) != _NONCE_RAW:
            return None
        head = raw[:16]
        if not hmac.compare_digest(raw[16:], self._sign(head, realm)):
            return None
        return int.from_bytes(head[:8], "big") / 1000.0

    # -- challenges ----------------------------------------------------------

    def challenge(
        self,
        request: Request,
        realm: str,
        proxy: bool = False,
        stale: bool = False,
        toTag: Optional[str] = None,
    ) -> Response:
        """
        A 401 (or 407 when C{proxy}) with one C{WWW-Authenticate} (or
        C{Proxy-Authenticate}) header per configured algorithm, SHA-256
        first by default, sharing one fresh nonce, C{qop="auth"}.
        """
        response = responseTo(request, 407 if proxy else 401, None, toTag)
        nonce = self.makeNonce(realm)
        templates = self._templates.get((realm, proxy, stale))
        if templates is None:
            templates = self._challengeTemplates(realm, proxy, stale)
        for name, before, after in templates:
            response.addHeader(name, before + nonce + after)
        return response

    def _challengeTemplates(self, realm: str, proxy: bool, stale: bool) -> list[tuple[str, str, str]]:
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        realmText = _quote(realm)
        staleText = ", stale=true" if stale else ""
        templates = [
            (name, f'Digest realm={realmText}, nonce="', f'", qop="auth", algorithm={algorithm}{staleText}')
            for algorithm in self.algorithms
        ]
        if len(self._templates) >= 1024:  # bounded: realms come from requests
            self._templates.clear()
        self._templates[(realm, proxy, stale)] = templates
        return templates

    # -- verification --------------------------------------------------------

    def _error(self, request: Request, code: int, reason: str, why: str, toTag: Optional[str]) -> AuthResult:
        return AuthResult(False, None, responseTo(request, code, reason, toTag), why)

    def _challenge(
        self, request: Request, realm: str, proxy: bool, why: str, toTag: Optional[str],
        stale: bool = False, subscriber: Any = None,
    ) -> AuthResult:
        return AuthResult(False, subscriber, self.challenge(request, realm, proxy, stale, toTag), why, stale)

    def credentials(self, request: Request, realm: str, proxy: bool = False) -> Optional[DigestParams]:
        """
        The Digest credentials of C{request} for C{realm}, C{None} if it
        has none for that realm; raise L{SIPParseError} for a malformed
        Authorization header.
        """
        header = "Proxy-Authorization" if proxy else "Authorization"
        values = request.getHeaderValues(header)
        if not values:
            return None
        realm = realm.lower()
        found: Optional[DigestParams] = None
        for value in values:
            params = _parseCredentials(value)
            if params.scheme.lower() != "digest":
                continue
            given = params.params.get("realm")
            if given is not None and given.lower() == realm:
                if found is not None:
                    raise SIPParseError(f"two {header} headers for realm {realm!r}")
                found = params
        if found is None:
            # Digest credentials for other realms only: a fresh challenge.
            return None
        return found

    async def authenticate(
        self,
        request: Request,
        realm: str,
        proxy: bool = False,
        toTag: Optional[str] = None,
        source: Any = None,
    ) -> AuthResult:
        """
        Check the request's credentials for C{realm}.

        C{source} (an L{Address} or a host string) keys the failure
        counter; without it the top Via's C{received} or host is used.
        Store failures (L{voipgw.db.errors.DatabaseUnavailable}) propagate
        to the caller, which answers 500/503.
        """
        now = self.clock.seconds()
        try:
            creds = self.credentials(request, realm, proxy)
        except SIPParseError as e:
            return self._error(request, 400, f"Bad Request ({e.reason})", "malformed", toTag)
        if creds is None:
            return self._challenge(request, realm, proxy, "no-credentials", toTag)
        p = creds.params
        missing = [name for name in _REQUIRED if not p.get(name)]
        qop = p.get("qop")
        if qop is None:
            missing.append("qop")
        if missing:
            return self._error(
                request, 400, f"Bad Request (credentials lack {', '.join(missing)})", "malformed", toTag
            )
        if qop != "auth":
            return self._error(request, 400, "Bad Request (only qop=auth is supported)", "malformed", toTag)
        nc, cnonce = p.get("nc", ""), p.get("cnonce", "")
        if len(nc) != 8 or not _HEX.issuperset(nc):
            return self._error(request, 400, "Bad Request (nc must be 8 hex digits)", "malformed", toTag)
        if not cnonce:
            return self._error(request, 400, "Bad Request (credentials lack cnonce)", "malformed", toTag)
        algorithm = (p.get("algorithm") or "MD5").upper()
        base = algorithm[:-5] if algorithm.endswith("-SESS") else algorithm
        if base not in self.algorithms:
            return self._challenge(request, realm, proxy, "algorithm", toTag)
        if algorithm.endswith("-SESS"):
            algorithm = base + "-sess"
        response = p["response"].lower()
        if len(response) != (32 if base == "MD5" else 64) or not _HEX.issuperset(response):
            return self._error(request, 400, "Bad Request (malformed digest response)", "malformed", toTag)
        uri = p["uri"]
        if not self._uriMatches(request, uri):
            return self._error(
                request, 400, "Bad Request (digest uri differs from the Request-URI)", "malformed", toTag
            )
        username = p["username"]
        host = self._sourceHost(request, source)
        identity = f"{username.lower()}@{realm.lower()}"
        if self._blocked(identity, host, now):
            return self._error(request, 403, "Forbidden (too many failed attempts)", "blocked", toTag)
        nonce = p["nonce"]
        issued = self.nonceIssued(nonce, realm)
        if issued is None or issued > now + CLOCK_SKEW:
            return self._challenge(request, realm, proxy, "bad-nonce", toTag)
        subscriber = await self.subscribers.getSubscriber(username, realm)
        now = self.clock.seconds()
        if subscriber is None:
            self._fail(identity, host, now)
            return self._challenge(request, realm, proxy, "unknown-user", toTag)
        ha1 = subscriber.ha1Sha256 if base == "SHA-256" else subscriber.ha1
        expected = digestResponse(algorithm, ha1, nonce, nc, cnonce, qop, request.method, uri)
        if not hmac.compare_digest(expected.encode("ascii"), response.encode("ascii")):
            self._fail(identity, host, now)
            return self._challenge(request, realm, proxy, "wrong-response", toTag)
        if now - issued > self.nonceLifetime:
            return self._challenge(request, realm, proxy, "stale", toTag, stale=True)
        if not self._countNonce(nonce, issued, int(nc, 16), now):
            # a replayed or reordered request with a known nonce
            return self._challenge(request, realm, proxy, "replay", toTag, stale=True)
        self._failures.pop((identity, host), None)
        if not subscriber.enabled:
            return AuthResult(
                False, subscriber, responseTo(request, 403, "Forbidden (subscriber disabled)", toTag),
                "disabled",
            )
        return AuthResult(True, subscriber, None, "ok")

    def _uriMatches(self, request: Request, uri: str) -> bool:
        if uri == request.receivedURIText:
            return True  # the usual case: the client copied the Request-URI
        try:
            return URI.parse(uri).equivalent(request.requestURI)
        except SIPParseError:
            return False

    @staticmethod
    def _sourceHost(request: Request, source: Any) -> str:
        if source is not None:
            return str(getattr(source, "host", source))
        try:
            via = request.topVia
        except SIPParseError:
            return ""
        return via.received or via.host

    # -- nonce counts ----------------------------------------------------------

    def _countNonce(self, nonce: str, issued: float, nc: int, now: float) -> bool:
        """Record C{nc} for C{nonce}; False if it is not above the highest seen."""
        counts = self._counts
        horizon = now - self.nonceLifetime - CLOCK_SKEW
        while counts:
            first = next(iter(counts.values()))
            if first[0] >= horizon:
                break
            counts.popitem(last=False)
        seen = counts.get(nonce)
        if seen is None:
            if issued <= self._evictedBefore:
                return False
            if nc < 1:
                return False
            counts[nonce] = (issued, nc)
            while len(counts) > self.maxTrackedNonces:
                _, (oldIssued, _nc) = counts.popitem(last=False)
                if oldIssued > self._evictedBefore:
                    self._evictedBefore = oldIssued
            return True
        if nc <= seen[1]:
            return False
        counts[nonce] = (seen[0], nc)
        return True

    # -- failures ------------------------------------------------------------------

    def _blocked(self, identity: str, host: str, now: float) -> bool:
        if self.maxFailures <= 0:
            return False
        entry = self._failures.get((identity, host))
        if entry is None:
            return False
        start, count = entry
        if now - start > self.failureWindow:
            del self._failures[(identity, host)]
            return False
        return count >= self.maxFailures

    def _fail(self, identity: str, host: str, now: float) -> None:
        if self.maxFailures <= 0:
            return
        key = (identity, host)
        entry = self._failures.get(key)
        if entry is None or now - entry[0] > self.failureWindow:
            self._failures.pop(key, None)
            self._failures[key] = (now, 1)
            if len(self._failures) > self.maxTrackedFailures:
                del self._failures[next(iter(self._failures))]
        else:
            self._failures[key] = (entry[0], entry[1] + 1)
            if entry[1] + 1 == self.maxFailures:
                self.log.warn(
                    "digest authentication of {identity} from {host} blocked after "
                    "{count} failures", identity=identity, host=host, count=entry[1] + 1,
                )

    def stats(self) -> dict[str, int]:
        return {"trackedNonces": len(self._counts), "trackedFailures": len(self._failures)}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
