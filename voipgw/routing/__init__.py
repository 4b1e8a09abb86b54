"""
Request routing: the stateful proxy (RFC 3261 §16), location routing,
dispatcher sets and RFC 3263 DNS.  See C{docs/routing.md}.
"""

from voipgw.routing.config import RoutingConfig, loadApplicationClass
from voipgw.routing.service import RoutingService, routingServiceFromConfig
from voipgw.routing.target import Target

__all__ = ["RoutingConfig", "RoutingService", "Target", "loadApplicationClass", "routingServiceFromConfig"]
