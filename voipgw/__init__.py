"""voipgw: a Twisted-based carrier SIP application server framework."""

__version__ = "0.1.0.dev0"
