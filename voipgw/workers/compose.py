# -*- test-case-name: tests.test_workers -*-
"""
Compose a complete node (registrar and routing included) for one process.

L{voipgw.node.buildNode} builds the stores, the transaction layer and the
listeners; the applications need the node's transaction layer, transports
and dispatcher, so they are added here, after the node is built, and placed
before the transaction layer in the start order (they start before the
listeners and stop after them), with the overload guard of
C{[overload]} (L{voipgw.overload}) on the dispatcher.  If the node already has C{registrar} or
C{routing} children (wired by C{buildNode}), they are kept and only pointed
at C{store} when one is given (the replicated store of a worker).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.service import IService

from voipgw.config import NodeConfig


def _child(node: Any, name: str) -> Optional[Any]:
    try:
        return node.getServiceNamed(name)
    except KeyError:
        return None


def _insertBefore(node: Any, service: Any, before: Any) -> None:
    """Add C{service} to C{node} so that it starts just before C{before}."""
    service.setServiceParent(node)
    services = node.services
    services.remove(service)
    services.insert(services.index(before), service)


def composeNode(config: NodeConfig, reactor: Any, store: Any = None, clock: Any = None) -> Any:
    """
    Build the node for C{config} with its registrar (when C{[node] domain}
    names at least one domain) and its routing service.

    @param store: the L{ILocationStore} the applications use; by default the
        node's own C{location.store}.  A worker passes its replicated store,
        which is also installed as the location service's store.
    """
    from voipgw.auth.config import AuthConfig
    from voipgw.node import buildNode
    from voipgw.registrar.config import RegistrarConfig
    from voipgw.registrar.service import Registrar
    from voipgw.routing.config import RoutingConfig
    from voipgw.routing.service import routingServiceFromConfig

    node = buildNode(config, reactor, clock)
    clock = node.clock
    if store is not None:
        if hasattr(store, "inner") and store.inner is None:
            store.inner = node.location.store
        node.location.store = store
    store = node.location.store
    registrar = _child(node, "registrar")
    routing = _child(node, "routing")
    authenticator = None
    if registrar is None and config.domains:
        auth = AuthConfig.fromSection(config.section("auth"))
        authenticator = auth.buildAuthenticator(node.subscribers.store, clock, config.dataDir)
        registrar = Registrar(
            RegistrarConfig.fromSection(config.section("registrar")), store, authenticator, config.domains, clock
        )
        _insertBefore(node, registrar, node.transactions)
        node.dispatcher.register(registrar)
    elif registrar is not None:
        registrar.location = store
    if routing is None:
        routing = routingServiceFromConfig(
            RoutingConfig.fromSection(config.section("routing")),
            node.transactions, node.transports, node.dispatcher, store, clock,
            subscribers=node.subscribers.store, counters=node.counters,
        )
        _insertBefore(node, routing, node.transactions)
        node.dispatcher.register(routing)
    else:
        routing.location = store
    assert IService.providedBy(routing)
    if getattr(node.dispatcher, "overload", "absent") is None:
        from voipgw.overload import OverloadService, overloadGuardFromSection

        transactions = node.transactions
        guard = overloadGuardFromSection(
            config.section("overload"), clock, lambda: len(transactions.server) + len(transactions.client)
        )
        if guard is not None:
            node.dispatcher.overload = guard
            _insertBefore(node, OverloadService(guard), node.transactions)
    return node
