# -*- test-case-name: tests.test_transport_udp -*-
"""SIP over UDP."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.protocol import DatagramProtocol

from voipgw.transport.address import Address

if TYPE_CHECKING:
    from voipgw.transport.manager import TransportService


class SIPDatagramProtocol(DatagramProtocol):
    """Hands every datagram to the transport service, which parses it."""

    noisy = False

    def __init__(self, service: "TransportService", local: Address) -> None:
        self.service = service
        self.local = local

    def datagramReceived(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        # The source names this protocol (not part of Address equality), so
        # the response leaves through the socket the request came in on.
        self.service.bytesReceived(data, Address("udp", addr[0], addr[1], self), self, datagram=True)

    def sendBytes(self, data: bytes, destination: Address) -> None:
        assert self.transport is not None
        self.transport.write(data, (destination.bareHost, destination.port))
