# -*- test-case-name: tests.test_node -*-
"""
The node: one tree of named services built from a L{NodeConfig}.

Children start in the order they were added, each waiting for the
previous one's start Deferred, and stop in reverse order (as Buildbot's
C{AsyncMultiService}).  Stores start first and the SIP listeners last, so
no message arrives before the services that handle it are ready; on stop
the listeners close first.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.application.service import IService, MultiService
from twisted.internet import defer
from twisted.logger import Logger

from voipgw.config import NodeConfig
from voipgw.dispatch import RequestDispatcher
from voipgw.stats import Counters
from voipgw.transaction.layer import TransactionLayer
from voipgw.transport.manager import TransportService


class AsyncMultiService(MultiService):
    """A MultiService whose children start in order and stop in reverse, awaiting each."""

    log = Logger()

    def startService(self) -> defer.Deferred:  # type: ignore[override]
        return defer.ensureDeferred(self._start())

    async def _start(self) -> None:
        from twisted.application.service import Service

        Service.startService(self)
        started: list[IService] = []
        try:
            for child in list(self):
                await defer.maybeDeferred(child.startService)
                started.append(child)
        except BaseException:
            self.log.failure("a service failed to start; stopping the others")
            for child in reversed(started):
                try:
                    await defer.maybeDeferred(child.stopService)
                except Exception:
                    self.log.failure("error stopping {name}", name=child.name)
            Service.stopService(self)
            raise

    def stopService(self) -> defer.Deferred:  # type: ignore[override]
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        from twisted.application.service import Service

        Service.stopService(self)
        for child in reversed(list(self)):
            if child.running:
                try:
                    await defer.maybeDeferred(child.stopService)
                except Exception:
                    self.log.failure("error stopping {name}", name=child.name)


class VoipNode(AsyncMultiService):
    """
    The root service of a node.  Named children: C{"transactions"},
    C{"transports"}, optionally C{"subscribers"}, C{"location"},
    C{"registrar"}, C{"routing"} and C{"manhole"}.  C{counters} holds the
    node's counters; C{dispatcher} maps methods to applications.
    """

    def __init__(self, config: NodeConfig, reactor: Any, clock: Any = None) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.counters = Counters()
        self.transports = TransportService(reactor, config.listen, config.transport, self.counters, self.clock)
        self.dispatcher = RequestDispatcher(self.transports, config.domains, self.counters)
        self.transactions = TransactionLayer(self.transports, self.clock, config.timers, self.counters, self.dispatcher)
        self.subscribers: Any = None
        self.location: Any = None
        self.authenticator: Any = None

    def startService(self) -> defer.Deferred:  # type: ignore[override]
        from voipgw.build import buildKind

        self.log.info("voipgw node starting ({build} build of the SIP message layer)", build=buildKind())
        return super().startService()

    def namespace(self) -> dict[str, Any]:
        """What the manhole shows: the node, its named services, counters."""
        namespace: dict[str, Any] = {
            "node": self,
            "counters": self.counters,
            "config": self.config,
            "dispatcher": self.dispatcher,
            "reactor": self.reactor,
            "authenticator": self.authenticator,
        }
        for service in self:
            if service.name:
                namespace[service.name] = service
        return namespace


class LazyResolver:
    """
    The system resolver (resolv.conf and hosts), made on the first lookup:
    a node whose targets are all IP addresses never starts one, and
    building the node does no I/O.
    """

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._resolver: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("lookup"):
            if self._resolver is None:
                self._resolver = self._factory()
            return getattr(self._resolver, name)
        raise AttributeError(name)


def buildRouting(config: NodeConfig, node: VoipNode, reactor: Any) -> Any:
    """The C{routing} service from C{[routing]}: proxy, location routing, dispatcher sets, DNS."""
    from twisted.names import client

    from voipgw.db.database import Database
    from voipgw.routing.config import RoutingConfig
    from voipgw.routing.dns import SIPResolver
    from voipgw.routing.service import routingServiceFromConfig

    routingConfig = RoutingConfig.fromSection(config.section("routing"))
    resolver = SIPResolver(LazyResolver(client.createResolver), node.clock)
    database = None
    if routingConfig.dispatcherDatabase:
        database = Database(routingConfig.dispatcherDatabase, reactor, node.clock, name="dispatcher sets")
    return routingServiceFromConfig(
        routingConfig, node.transactions, node.transports, node.dispatcher, node.location.store,
        node.clock, authenticator=node.authenticator, subscribers=node.subscribers.store,
        resolver=resolver, counters=node.counters, dispatcherDatabase=database,
    )


def validateConfig(config: NodeConfig) -> None:
    """
    Parse every section a node uses, without building anything (no files,
    no I/O beyond importing a configured application class): a bad value
    raises L{ConfigError} before worker processes are started.
    """
    from voipgw.auth.config import AuthConfig
    from voipgw.location.config import LocationConfig
    from voipgw.overload import overloadGuardFromSection
    from voipgw.registrar.config import RegistrarConfig
    from voipgw.routing.config import RoutingConfig, loadApplicationClass
    from voipgw.subscribers.config import SubscriberConfig

    subscribers = config.section("subscribers")
    subscribers.setdefault("master", "sqlite:///subscribers.sqlite")
    SubscriberConfig.fromSection(subscribers)
    LocationConfig.fromSection(config.section("location"))
    AuthConfig.fromSection(config.section("auth"))
    RegistrarConfig.fromSection(config.section("registrar"))
    routing = RoutingConfig.fromSection(config.section("routing"))
    if routing.application:
        loadApplicationClass(routing.application)
    overloadGuardFromSection(config.section("overload"), None)


def addOverloadGuard(config: NodeConfig, node: VoipNode) -> None:
    """
    The C{[overload]} guard (on by default): while the reactor lags, UDP
    requests wait too long in the receive queue or too many transactions
    are alive, new requests get 503 + Retry-After instead
    of piling up retransmissions (L{voipgw.overload}).
    """
    from voipgw.overload import OverloadService, overloadGuardFromSection

    transactions = node.transactions
    guard = overloadGuardFromSection(
        config.section("overload"), node.clock, lambda: len(transactions.server) + len(transactions.client),
        queueDelay=node.transports.currentReceiveQueueDelay,
    )
    if guard is not None:
        node.dispatcher.overload = guard
        node.transports.maxQueueAge = guard.maxQueueAge
        OverloadService(guard).setServiceParent(node)


def subscriberMasterURL(config: NodeConfig) -> str:
    """The subscriber master's URL: C{[subscribers] master}, else SQLite in the data directory."""
    configured = config.section("subscribers").get("master", "").strip()
    if configured:
        return configured
    return "sqlite:///" + os.path.abspath(os.path.join(config.dataDir, "subscribers.sqlite"))


def prepareEmbeddedSubscribers(config: NodeConfig) -> None:
    """
    Create the embedded SQLite subscriber schema if it is missing (blocking;
    for start-up, before worker processes would race to create it).
    Client-server databases are left to C{voipgw-admin db init}.
    """
    from sqlalchemy.engine import make_url

    from voipgw.admin.db_commands import openEngine
    from voipgw.subscribers.schema import MIGRATOR

    url = subscriberMasterURL(config)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    engine = openEngine(url, create=True)  # as 'voipgw-admin db init' does
    try:
        with engine.begin() as conn:
            MIGRATOR.initialise(conn)
    finally:
        engine.dispose()


def buildNode(config: NodeConfig, reactor: Any, clock: Any = None, applications: Optional[list[Any]] = None) -> VoipNode:
    """
    Build the service tree for C{config}: the subscriber and location
    stores, the applications (the registrar, then C{applications}), the
    transaction layer, the listeners, then the manhole if configured.

    Each entry of C{applications} is an L{ISIPApplication} or a callable
    taking the node and returning one (so it can use C{node.location.store},
    C{node.authenticator}...); it takes the methods it names over the
    built-in applications.
    """
    from voipgw.auth.config import AuthConfig
    from voipgw.location.config import LocationConfig
    from voipgw.location.service import locationServiceFromConfig
    from voipgw.registrar.config import RegistrarConfig
    from voipgw.registrar.service import Registrar
    from voipgw.subscribers.config import SubscriberConfig
    from voipgw.subscribers.service import SubscriberService

    os.makedirs(config.dataDir, exist_ok=True)
    node = VoipNode(config, reactor, clock)
    subscriberSection = config.section("subscribers")
    subscriberSection["master"] = subscriberMasterURL(config)
    node.subscribers = SubscriberService.fromConfig(SubscriberConfig.fromSection(subscriberSection), reactor, node.clock)
    node.subscribers.setServiceParent(node)
    node.location = locationServiceFromConfig(LocationConfig.fromSection(config.section("location")), reactor, node.clock)
    node.location.setServiceParent(node)
    node.authenticator = AuthConfig.fromSection(config.section("auth")).buildAuthenticator(
        node.subscribers.store, node.clock, config.dataDir
    )
    builtIn: list[Any] = [
        Registrar(
            RegistrarConfig.fromSection(config.section("registrar")),
            node.location.store, node.authenticator, config.domains, node.clock,
        )
    ]
    builtIn.append(buildRouting(config, node, reactor))
    given = [a(node) if isinstance(a, type) or not hasattr(a, "methods") else a for a in applications or []]
    for application in builtIn + given:
        if IService.providedBy(application) and application.parent is None:
            application.setServiceParent(node)
        node.dispatcher.register(application)
    addOverloadGuard(config, node)
    node.transactions.setServiceParent(node)
    node.transports.setServiceParent(node)
    if config.manhole.listen:
        from voipgw.management.manhole import makeManholeService

        namespace = node.namespace()
        manholeService = makeManholeService(config.manhole, namespace, reactor, config.dataDir)
        manholeService._raiseSynchronously = True
        manholeService.setServiceParent(node)
        namespace["manhole"] = manholeService
    return node
