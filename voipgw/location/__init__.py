"""
Location stores: where each registered address-of-record can be reached.

The node builds the C{location} service with
C{locationServiceFromConfig(LocationConfig.fromSection(section), reactor, clock)};
the registrar and router use its C{.store} (an L{ILocationStore}) and map
L{PartitionUnavailable} to C{503} with C{Retry-After}.  See C{docs/location.md}.
"""

from voipgw.location.binding import Binding, normaliseAOR
from voipgw.location.errors import ConfigError, PartitionUnavailable

__all__ = ["Binding", "normaliseAOR", "ConfigError", "PartitionUnavailable"]
