# -*- test-case-name: tests.test_registrar -*-
"""
The registrar (RFC 3261 §10.3) with digest authentication, Path (RFC 3327)
and RFC 5626 instance-id/reg-id flows.

L{Registrar.handleRequest} runs the steps of §10.3 in order:

 1. the Request-URI host must be one of the node's domains, else C{404}
    (RFC 3261 §21.4.4: "also returned if the domain in the Request-URI does
    not match any of the domains handled by the recipient"); this registrar
    never proxies a REGISTER onwards;
 2. C{Require} option tags other than C{path}/C{outbound} get C{420};
 3. the To-URI is the AOR; its domain must be served (C{404});
    more Contacts than C{max_contacts_per_request} get C{403} before any
    parsing or lookup;
 4. authentication (L{DigestAuthenticator}; realm by C{realm_policy}),
    then authorisation: L{allowRegistration} (by default the digest
    username must be the AOR user) -- an unknown AOR is only revealed
    (C{404}) to an authenticated subscriber;
 5. Contact and Expires syntax (C{400} with the reason); C{*} only alone
    and with C{Expires: 0};
 6. under a per-AOR lock: the current bindings are read, every Contact is
    checked against them (Call-ID/CSeq ordering: the same Call-ID with a
    CSeq not higher than the stored one aborts the whole request with
    C{500}, as §10.3 step 7 requires), expiry is decided (C{423} +
    C{Min-Expires} for a non-zero value below C{min_expires}; values above
    C{max_expires} are clamped; optional jitter), the contact limit is
    applied, and only then is anything written.  A store failure during the
    writes undoes the writes already made and answers C{503} with
    C{Retry-After};
 7. C{200} lists every current binding with C{;expires=N} and a C{Date}.

Subclassing hooks (override in a subclass; defaults are safe):

 - L{realmFor}C{(request, aorURI)}: the digest realm;
 - L{allowRegistration}C{(request, subscriber, aor)}: may this subscriber
   change this AOR's bindings (C{False} gives 403);
 - L{grantExpires}C{(requested, subscriber)}: the granted expiry of one
   contact (after the 423 check);
 - L{onBindingsChanged}C{(aor, bindings)}: called after a committed
   change with the AOR's bindings (e.g. to replicate or send reg-event);
 - L{buildOK}C{(request, transaction, bindings, now)}: the 200 response.
"""

from __future__ import annotations

import email.utils
import re
from random import Random
from typing import Any, Iterable, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements

from voipgw.coroutines import runCoroutine
from voipgw.db.errors import DatabaseUnavailable
from voipgw.interfaces import ISIPApplication
from voipgw.location.binding import Binding
from voipgw.location.errors import PartitionUnavailable
from voipgw.mypycattr import mypyc_attr
from voipgw.registrar.config import MAX_DELTA_SECONDS, RegistrarConfig
from voipgw.sip.address import NameAddress
from voipgw.sip.errors import SIPParseError
from voipgw.sip.message import Request, Response
from voipgw.sip.uri import URI

__all__ = ["Registrar", "RegistrationRejected"]

#: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
#: Contact header parameters the registrar interprets (not kept in extra).
_OWN_PARAMS = frozenset({"expires", "q", "+sip.instance", "reg-id"})
_SUPPORTED_OPTIONS = frozenset({"path", "outbound"})
_UNAVAILABLE = (PartitionUnavailable, DatabaseUnavailable)


class RegistrationRejected(Exception):
    """Raised inside the registrar (and by hooks) to answer with C{code}."""

    def __init__(self, code: int, reason: Optional[str] = None,
                 headers: Optional[list[tuple[str, str]]] = None) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.headers = headers or []


def _reject(code: int, detail: str, phrase: str = "Bad Request",
            headers: Optional[list[tuple[str, str]]] = None) -> RegistrationRejected:
    return RegistrationRejected(code, f"{phrase} ({detail})", headers)


def deltaSeconds(text: str, what: str) -> int:
    """Parse a delta-seconds value (0..2**32-1); raise a 400 rejection."""
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit():
        raise _reject(400, f"malformed {what} {text[:20]!r}")
    if len(text) > 10 or int(text) > MAX_DELTA_SECONDS:
        raise _reject(400, f"{what} {text[:20]} out of range")
    return int(text)


def formatQ(q: float) -> str:
    return f"{q:.3f}".rstrip("0").rstrip(".") if q else "0"


class _Contact:
    """One parsed Contact of the request, before it is matched."""

    __slots__ = ("address", "contact", "expires", "q", "instanceId", "regId", "extra")

    def __init__(self, address: NameAddress, contact: str, expires: int, q: float,
                 instanceId: str, regId: int, extra: tuple[tuple[str, str], ...]) -> None:
        self.address = address
        self.contact = contact
        self.expires = expires
        self.q = q
        self.instanceId = instanceId
        self.regId = regId
        self.extra = extra

    @property
    def key(self) -> str:
        if self.instanceId:
            return f"{self.instanceId};reg-id={self.regId}"
        return self.contact


class _KeyedLock:
    """
    One lock per key (an AOR), so that two REGISTERs for the same AOR never
    interleave their read-modify-write of its bindings.  A free key costs a
    dictionary entry, no Deferred; waiters are served in arrival order.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, list[defer.Deferred[None]]] = {}

    def acquire(self, key: str) -> Optional[defer.Deferred[None]]:
        """None if C{key} was free (now held); else a Deferred that fires when it is this caller's."""
        waiters = self._waiters.get(key)
        if waiters is None:
            self._waiters[key] = []
            return None
        turn: defer.Deferred[None] = defer.Deferred()
        waiters.append(turn)
        return turn

    def release(self, key: str) -> None:
        """Hand C{key} to the next waiter, or free it."""
        waiters = self._waiters.get(key)
        if waiters:
            waiters.pop(0).callback(None)
        else:
            self._waiters.pop(key, None)

    def __len__(self) -> int:
        return len(self._waiters)


@mypyc_attr(allow_interpreted_subclasses=True)
class Registrar(Service):
    """
    The C{registrar} service: handles REGISTER.

    @param config: a L{RegistrarConfig}.
    @param location: the L{ILocationStore} (the node's C{location.store}).
    @param authenticator: a L{voipgw.auth.DigestAuthenticator}, or C{None}
        for an open registrar (any AOR of a served domain may register;
        meant for tests and closed networks only).
    @param domains: the domains this registrar serves (at least one).
    @param clock: C{seconds()} provider; binding times are on this clock.
    @param random: a C{random.Random} for expiry jitter (tests pass a seeded one).
    """

    log = Logger(namespace="voipgw.registrar.service.Registrar")
    name = "registrar"
    methods = frozenset({"REGISTER"})

    def __init__(
        self,
        config: RegistrarConfig,
        location: Any,
        authenticator: Any,
        domains: Iterable[str],
        clock: Any,
        random: Optional[Random] = None,
    ) -> None:
        self.config = config
        self.location = location
        self.authenticator = authenticator
        self.domains = frozenset(d.strip().lower() for d in domains if d.strip())
        if not self.domains:
            raise ValueError("the registrar needs at least one domain to serve ([node] domain)")
        self.clock = clock
        self.random = random if random is not None else Random()
        self.counters: dict[str, int] = {}
        self._locks = _KeyedLock()
        self._dateSecond = -1
        self._dateText = ""

    # -- ISIPApplication ---------------------------------------------------------

    def handleRequest(self, request: Request, transaction: Any) -> None:
        runCoroutine(self.processRegister(request, transaction),
                     lambda failure: self._crashed(failure, request, transaction))

    def _crashed(self, failure: Failure, request: Request, transaction: Any) -> None:
        self.log.failure("REGISTER processing failed (Call-ID {callId})", failure,
                         callId=request.getHeader("Call-ID"))
        self._count("error")
        last = getattr(transaction, "lastResponse", None)
        if last is None or last.code < 200:
            transaction.respond(500)

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    async def processRegister(self, request: Request, transaction: Any) -> None:
        """Run the §10.3 steps and send exactly one final response."""
        try:
            response = await self._register(request, transaction)
        except RegistrationRejected as r:
            self._count(f"rejected.{r.code}")
            transaction.respond(r.code, r.reason, r.headers)
            return
        except _UNAVAILABLE as e:
            self._count("unavailable")
            self.log.warn("REGISTER answered 503: {error}", error=str(e))
            transaction.respond(503, "Service Unavailable", [("Retry-After", str(self.config.retryAfter))])
            return
        if response.code == 200:
            self._count("ok")
        else:
            self._count(f"auth.{response.code}")
            if response.code == 401 and transaction.state == transaction.TRYING:
                # the challenge keeps no state, as RFC 3261 §8.2.7 suggests:
                # half of every registration is a challenge, and a
                # completed transaction would hold it for timer J (32 s)
                transaction.respondStatelessly(response)
                return
        transaction.respond(response)

    # -- hooks -------------------------------------------------------------------

    def realmFor(self, request: Request, aorURI: URI) -> str:
        """The digest realm for this REGISTER (C{realm_policy})."""
        if self.config.realmPolicy == "request-uri":
            return request.requestURI.hostLower
        return aorURI.hostLower

    def allowRegistration(self, request: Request, subscriber: Any, aor: str) -> bool:
        """
        May the authenticated C{subscriber} (C{None} without an
        authenticator) change the bindings of C{aor}?  By default, with
        C{username_must_match}, only the AOR's own subscriber may; otherwise
        any subscriber of the same domain may.
        """
        if subscriber is None:
            return True
        if self.config.usernameMustMatch:
            return bool(subscriber.aor.lower() == aor)
        return bool(subscriber.domain.lower() == aor.rpartition("@")[2])

    def grantExpires(self, requested: int, subscriber: Any) -> int:
        """
        The expiry granted for a non-zero C{requested} value at or above
        C{min_expires}: clamped to C{max_expires}, minus up to
        C{expires_jitter_percent} percent (never below C{min_expires}).
        """
        granted = min(requested, self.config.maxExpires)
        percent = self.config.expiresJitterPercent
        if percent:
            granted -= int(self.random.random() * granted * percent / 100.0)
            granted = max(granted, self.config.minExpires)
        return granted

    def onBindingsChanged(self, aor: str, bindings: list[Binding]) -> None:
        """Called after a committed change with the AOR's current bindings."""

    def buildOK(self, request: Request, transaction: Any, bindings: list[Binding], now: float) -> Response:
        """The 200 OK: every binding with its remaining expiry, Date, Path."""
        response: Response = transaction.createResponse(200)
        for b in bindings:
            response.addHeader("Contact", self.formatContact(b, now))
        paths = request.getHeaderValues("Path")
        if paths and self._supports(request, "path"):
            response.setHeaderValues("Path", paths)
        if any(b.instanceId and b.regId for b in bindings) and self._supports(request, "outbound"):
            response.addHeader("Require", "outbound")
        response.addHeader("Date", self._date(now))
        return response

    @staticmethod
    def formatContact(b: Binding, now: float) -> str:
        parts = [f"<{b.contact}>;expires={b.remaining(now)}"]
        if b.q != 1.0:
            parts.append(f";q={formatQ(b.q)}")
        if b.instanceId:
            parts.append(f';+sip.instance="{b.instanceId}"')
            if b.regId:
                parts.append(f";reg-id={b.regId}")
        for name, value in b.extra:
            parts.append(f";{name}={value}" if value else f";{name}")
        return "".join(parts)

    # -- the steps -----------------------------------------------------------------

    async def _register(self, request: Request, transaction: Any) -> Response:
        config = self.config
        ruri = request.requestURI
        if not ruri.isSIP or ruri.hostLower not in self.domains:
            raise _reject(404, "domain not served here", "Not Found")
        required = request.getHeaderValues("Require")
        if required:
            unsupported = [r.strip() for r in required if r.strip().lower() not in _SUPPORTED_OPTIONS]
            if unsupported:
                raise RegistrationRejected(420, None, [("Unsupported", ", ".join(unsupported))])
        toURI = request.toAddress.uri
        if toURI is None or not toURI.isSIP or not toURI.user:
            raise _reject(400, "To must be a SIP URI with a user part")
        if toURI.hostLower not in self.domains:
            raise _reject(404, "address-of-record domain not served here", "Not Found")
        aor = toURI.aor()
        if len(request.getHeaderValues("Contact")) > config.maxContactsPerRequest:
            raise _reject(403, f"more than {config.maxContactsPerRequest} contacts in one request",
                          "Forbidden")

        subscriber = None
        if self.authenticator is not None:
            result = await self.authenticator.authenticate(
                request, self.realmFor(request, toURI), toTag=transaction.toTag, source=transaction.source,
            )
            if not result.ok:
                return result.response  # type: ignore[no-any-return]
            subscriber = result.subscriber
            if not self.allowRegistration(request, subscriber, aor):
                raise _reject(403, "credentials do not match the address-of-record", "Forbidden")
            if subscriber.aor.lower() != aor:
                user, _, domain = aor.rpartition("@")
                subscriber = await self.authenticator.subscribers.getSubscriber(user, domain)
                if subscriber is None:
                    raise _reject(404, "unknown address-of-record", "Not Found")

        try:
            addresses = request.contacts
        except SIPParseError as e:
            raise _reject(400, f"bad Contact: {e.reason}") from None
        expiresText = request.getHeader("Expires")
        headerExpires = deltaSeconds(expiresText, "Expires") if expiresText is not None else None
        wildcard = any(a.wildcard for a in addresses)
        if wildcard and (len(addresses) != 1 or headerExpires != 0):
            raise _reject(400, "Contact: * needs Expires: 0 and no other Contact")
        contacts = [] if wildcard else [self._parseContact(a, headerExpires) for a in addresses]

        turn = self._locks.acquire(aor)
        if turn is not None:
            await turn
        try:
            bindings = await self._update(request, transaction, aor, contacts, wildcard, subscriber)
        finally:
            self._locks.release(aor)
        return self.buildOK(request, transaction, bindings, self.clock.seconds())

    def _parseContact(self, address: NameAddress, headerExpires: Optional[int]) -> _Contact:
        params = address.params
        uri = address.uri
        assert uri is not None
        raw = params.get("expires", "")
        if raw is None:
            raise _reject(400, "Contact expires parameter without a value")
        if raw:
            expires = deltaSeconds(raw, "Contact expires")
        elif headerExpires is not None:
            expires = headerExpires
        else:
            expires = self.config.defaultExpires
        q = 1.0
        qText = params.get("q")
        if "q" in params:
            if qText is None or not _QVALUE.fullmatch(qText):
                raise _reject(400, f"bad Contact q-value {qText!r}")
            q = float(qText)
        instanceId = ""
        regId = 0
        if "+sip.instance" in params:
            value = params["+sip.instance"] or ""
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            if not value or not value.startswith("<") or not value.endswith(">"):
                raise _reject(400, "bad +sip.instance (expected \"<urn:...>\")")
            instanceId = value
            if "reg-id" in params:
                regText = params["reg-id"] or ""
                if not regText.isascii() or not regText.isdigit() or not 0 < int(regText[:11]) < 2**31:
                    raise _reject(400, f"bad reg-id {regText[:20]!r}")
                regId = int(regText)
        extra = tuple((k, v or "") for k, v in params.items() if k not in _OWN_PARAMS)
        return _Contact(address, str(uri), expires, q, instanceId, regId, extra)

    async def _update(
        self, request: Request, transaction: Any, aor: str, contacts: list[_Contact],
        wildcard: bool, subscriber: Any,
    ) -> list[Binding]:
        config = self.config
        location = self.location
        now = self.clock.seconds()
        existing = await location.lookup(aor, now)
        if not contacts and not wildcard:
            return self._ordered(existing)
        callId = request.callId
        cseq = request.cseq.number
        current = {b.key: b for b in existing}
        removes: list[str] = []
        saves: dict[str, Binding] = {}

        def checkOrder(old: Binding) -> None:
            if old.callId == callId and cseq <= old.cseq:
                raise RegistrationRejected(
                    500, "Server Internal Error (out-of-order REGISTER: CSeq not above the binding's)"
                )

        if wildcard:
            for old in existing:
                checkOrder(old)
            removes = [b.key for b in existing]
        else:
            tooBrief = [c for c in contacts if 0 < c.expires < config.minExpires]
            if tooBrief:
                raise RegistrationRejected(
                    423, "Interval Too Brief", [("Min-Expires", str(config.minExpires))]
                )
            path = tuple(p.strip() for p in request.getHeaderValues("Path"))
            received = str(transaction.source)
            userAgent = (request.getHeader("User-Agent") or "")[:255]
            for c in contacts:
                key = c.key
                old = current.get(key)
                if old is None and not c.instanceId:
                    old = self._equivalent(c, existing)
                if old is not None:
                    checkOrder(old)
                    if old.key != key:
                        removes.append(old.key)
                if c.expires == 0:
                    if old is not None and old.key not in removes:
                        removes.append(old.key)
                    saves.pop(key, None)
                    continue
                saves[key] = Binding(
                    aor=aor, contact=c.contact, expires=now + self.grantExpires(c.expires, subscriber),
                    q=c.q, callId=callId, cseq=cseq, path=path, received=received,
                    instanceId=c.instanceId, regId=c.regId, userAgent=userAgent, updated=now,
                    extra=c.extra,
                )
        final = {k: b for k, b in current.items() if k not in removes}
        final.update(saves)
        limit = (subscriber.maxContacts if subscriber is not None and subscriber.maxContacts else 0) \
            or config.maxContacts
        if limit and len(final) > limit:
            if config.maxContactsPolicy == "reject" or len(saves) > limit:
                raise _reject(403, f"more than {limit} contacts for this address-of-record", "Forbidden")
            for old in sorted((b for k, b in final.items() if k not in saves), key=lambda b: b.updated):
                if len(final) <= limit:
                    break
                del final[old.key]
                removes.append(old.key)
        removes = [k for k in dict.fromkeys(removes) if k in current and k not in saves]
        if removes or saves:
            await self._apply(aor, current, removes, list(saves.values()))
            bindings = self._ordered(list(final.values()))
            try:
                self.onBindingsChanged(aor, bindings)
            except Exception:
                self.log.failure("onBindingsChanged failed for {aor}", aor=aor)
            return bindings
        return self._ordered(list(final.values()))

    @staticmethod
    def _equivalent(c: _Contact, existing: list[Binding]) -> Optional[Binding]:
        """The stored binding whose contact URI is §19.1.4-equivalent to C{c}'s."""
        uri = c.address.uri
        assert uri is not None
        for b in existing:
            if b.instanceId:
                continue
            try:
                if URI.parse(b.contact).equivalent(uri):
                    return b
            except SIPParseError:
                continue
        return None

    async def _apply(self, aor: str, current: dict[str, Binding], removes: list[str],
                     saves: list[Binding]) -> None:
        """Write the plan; on a store failure undo what was written and re-raise."""
        location = self.location
        done: list[tuple[str, Binding]] = []
        try:
            for key in removes:
                await location.remove(aor, key)
                done.append(("removed", current[key]))
            for binding in saves:
                await location.save(binding)
                done.append(("saved", binding))
        except BaseException:
            await self._undo(aor, current, done)
            raise

    async def _undo(self, aor: str, current: dict[str, Binding], done: list[tuple[str, Binding]]) -> None:
        for action, binding in reversed(done):
            try:
                if action == "removed":
                    await self.location.save(binding)
                else:
                    previous = current.get(binding.key)
                    if previous is not None:
                        await self.location.save(previous)
                    else:
                        await self.location.remove(aor, binding.key)
            except Exception:
                self.log.failure("could not undo a partial REGISTER update of {aor}", aor=aor)

    @staticmethod
    def _ordered(bindings: list[Binding]) -> list[Binding]:
        return sorted(bindings, key=lambda b: (-b.q, -b.updated))

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def _supports(request: Request, option: str) -> bool:
        for value in request.getHeaderValues("Supported"):
            if value.strip().lower() == option:
                return True
        return False

    def _date(self, now: float) -> str:
        second = int(now)
        if second != self._dateSecond:
            self._dateSecond = second
            self._dateText = email.utils.formatdate(second, usegmt=True)
        return self._dateText

    def stats(self) -> dict[str, int]:
        """Outcome counters as plain data (manhole, management API)."""
        return dict(self.counters)


# after the class statement: mypyc compiles this module (voipgw.build), and a
# class decorator other than mypyc's own does not go with a compiled class
# (with @implementer, Python subclasses of the compiled registrar were refused)
classImplements(Registrar, ISIPApplication)
