# -*- test-case-name: tests.test_workers -*-
"""
Compose the node of one worker process.

L{voipgw.node.buildNode} builds the whole node from config (stores,
registrar, routing, overload guard, transaction layer, listeners); a worker
additionally gives the applications its replicated location store.
"""

from __future__ import annotations

from typing import Any


from voipgw.config import NodeConfig


def composeNode(config: NodeConfig, reactor: Any, store: Any = None, clock: Any = None) -> Any:
    """
    Build the node for C{config}.

    @param store: the L{ILocationStore} the applications use; by default the
        node's own C{location.store}.  A worker passes its replicated store,
        which wraps the node's own store and is installed as the location
        service's store, the registrar's and the router's.
    """
    from voipgw.node import buildNode

    node = buildNode(config, reactor, clock)
    if store is not None:
        if hasattr(store, "inner") and store.inner is None:
            store.inner = node.location.store
        node.location.store = store
        node.getServiceNamed("registrar").location = store
        node.getServiceNamed("routing").location = store
    return node
