"""
Test helpers for voipgw and for applications built on it.

L{FakeTransportService} stands in for the transport service: it records
what is sent (with L{Address} destinations) and turns wire bytes into
received messages, so a L{voipgw.transaction.TransactionLayer} and the
application above it can be driven from tests with a
C{twisted.internet.task.Clock}.
"""

from voipgw.testing.transport import FakeListener, FakeTransportService, SentMessage

__all__ = ["FakeListener", "FakeTransportService", "SentMessage"]
