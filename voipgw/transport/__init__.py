"""SIP transports: UDP, TCP and TLS listeners and connections."""

from voipgw.transport.address import Address, parseListen
from voipgw.transport.manager import TransportService, TransportSettings
from voipgw.transport.tls import TLSConfigError, TLSSettings

__all__ = ["Address", "parseListen", "TransportService", "TransportSettings", "TLSConfigError", "TLSSettings"]
