"""
The seams of voipgw: the interfaces services use to talk to each other.

Services receive their collaborators as constructor arguments typed by these
interfaces, so an application can replace any one of them.  Every method that
may touch a database or the network returns a L{Deferred}.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class ISubscriberStore(Interface):
    """
    Provisioned subscribers (credentials and per-subscriber settings).

    Reads may be served by a replica and cached; writes go to the master and
    fail with L{voipgw.db.errors.DatabaseUnavailable} when it is down.
    """

    def getSubscriber(username: str, domain: str):  # type: ignore[misc]
        """
        Deferred firing with the L{voipgw.subscribers.Subscriber} or C{None}.
        Username and domain are matched case-insensitively.
        """

    def addSubscriber(username: str, domain: str, password: str, **settings):  # type: ignore[misc]
        """
        Deferred firing with the new subscriber; fails with
        L{voipgw.subscribers.errors.SubscriberExists} for a duplicate.
        """

    def removeSubscriber(username: str, domain: str):  # type: ignore[misc]
        """Deferred firing with C{None}; fails with C{UnknownSubscriber}."""

    def setPassword(username: str, domain: str, password: str):  # type: ignore[misc]
        """Deferred firing with C{None}; fails with C{UnknownSubscriber}."""

    def listSubscribers(domain: str | None = None, limit: int = 1000, offset: int = 0):  # type: ignore[misc]
        """Deferred firing with a list of subscribers ordered by domain, username."""


class ILocationStore(Interface):
    """
    Where each address-of-record is registered: its contact bindings.

    AORs are given normalised (L{voipgw.location.normaliseAOR}).  Times are
    absolute seconds on the registrar's clock.  Expired bindings are never
    returned by L{lookup}, whether or not L{expire} has removed them yet.
    """

    def lookup(aor: str, now: float):  # type: ignore[misc]
        """Deferred firing with the list of live L{Binding}s of C{aor}."""

    def save(binding):  # type: ignore[misc]
        """
        Insert or replace the binding with the same C{aor} and C{key}.
        Deferred firing with C{None} once the binding is durable.
        """

    def remove(aor: str, key: str):  # type: ignore[misc]
        """Remove one binding by key; Deferred firing with C{True} if it existed."""

    def removeAll(aor: str):  # type: ignore[misc]
        """Remove every binding of C{aor}; Deferred firing with the count removed."""

    def expire(now: float):  # type: ignore[misc]
        """Delete bindings expired at C{now}; Deferred firing with the count removed."""

    def count():  # type: ignore[misc]
        """Deferred firing with the number of stored (not yet expired) bindings."""


class IClock(Interface):
    """The subset of C{IReactorTime} voipgw timers use (task.Clock provides it)."""

    def seconds() -> float:  # type: ignore[misc]
        """The current time."""

    def callLater(delay: float, f, *args, **kw):  # type: ignore[misc]
        """Schedule C{f} and return an C{IDelayedCall}."""


class ISIPTransport(Interface):
    """A listener able to send SIP messages (UDP, TCP or TLS)."""

    name = Attribute("'udp', 'tcp' or 'tls'")
    reliable = Attribute("True for stream transports")
    host = Attribute("The local address the listener is bound to")
    port = Attribute("The local port the listener is bound to")

    def send(message, destination) -> None:  # type: ignore[misc]
        """Serialise C{message} and send it to C{destination} (an L{Address})."""


class IMessageReceiver(Interface):
    """What the transports deliver parsed messages to (the transaction layer)."""

    def receiveMessage(message, source) -> None:  # type: ignore[misc]
        """A parsed request or response arrived from C{source} (an L{Address})."""


class ISIPApplication(Interface):
    """
    A service that owns SIP methods: the registrar, the router, a custom app.

    The transaction layer calls L{handleRequest} once per new server
    transaction (never for a retransmission).
    """

    methods = Attribute("The set of methods this application handles, e.g. {'REGISTER'}")

    def handleRequest(request, transaction) -> None:  # type: ignore[misc]
        """Handle a new request; respond through C{transaction.respond}."""
