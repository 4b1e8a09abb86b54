# -*- test-case-name: tests.test_transport_udp -*-
"""SIP over UDP."""

from __future__ import annotations

import socket
import struct
import time
from typing import TYPE_CHECKING, Any

from twisted.internet import udp
from twisted.internet.protocol import DatagramProtocol

from voipgw.transport.address import Address

if TYPE_CHECKING:
    from voipgw.transport.manager import TransportService

_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_TIMESPEC_SIZE = _TIMESPEC.size
_unpackTimespec = _TIMESPEC.unpack_from
_SOL_SOCKET = socket.SOL_SOCKET
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
#: Request methods that start new work: a stale one may be dropped unread.
_NEW_WORK = frozenset([b"INVITE", b"REGISTER", b"OPTIONS", b"SUBSCRIBE", b"MESSAGE", b"PUBLISH", b"REFER"])
#: Bound of the per-port set of destination hosts known to be IP addresses.
_CHECKED_HOSTS_MAX = 65536
#: Bound of the per-protocol cache of source addresses.
_SOURCES_MAX = 16384


class SIPDatagramProtocol(DatagramProtocol):
    """Hands every datagram to the transport service, which parses it."""

    noisy = False

    def __init__(self, service: "TransportService", local: Address) -> None:
        self.service = service
        self.local = local
        #: Source addresses already seen, by (host, port): an Address is
        #: immutable, and building one costs more than a lookup.
        self._sources: dict[tuple, Address] = {}

    def datagramReceived(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        # The source names this protocol (not part of Address equality), so
        # the response leaves through the socket the request came in on.
        sources = self._sources
        source = sources.get(addr)
        if source is None:
            if len(sources) >= _SOURCES_MAX:
                sources.clear()
            source = sources[addr] = Address("udp", addr[0], addr[1], self)
        self.service.bytesReceived(data, source, self, datagram=True)

    def sendBytes(self, data: bytes, destination: Address) -> None:
        assert self.transport is not None
        self.transport.write(data, (destination.bareHost, destination.port))


class SIPDatagramPort(udp.Port):
    """
    A UDP port that knows how long each datagram waited in the kernel's
    receive queue (SO_TIMESTAMPNS).  The wait of the first datagram of each
    read batch (the oldest) goes to the transport service's
    C{noteReceiveQueueDelay}: a big receive buffer absorbs bursts, but under
    sustained overload it turns into seconds of queueing that no
    reactor-lag probe sees, and the overload guard reads this instead
    (L{voipgw.overload}).  A request starting new work (INVITE, REGISTER,
    ...) that waited longer than the service's C{maxQueueAge} is dropped
    unread: its sender has retransmitted it by then (RFC 3261 timers A and
    E fire after T1), so answering the stale copy is work for nothing.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Destination hosts Twisted has already accepted (IP addresses of this family).
        self._checkedHosts: set[str] = set()

    def doRead(self) -> None:
        protocol = self.protocol
        service = protocol.service
        maxAge = service.maxQueueAge
        # bound once per read batch, not per datagram
        recvmsg = self.socket.recvmsg
        receive = protocol.datagramReceived
        maxPacketSize = self.maxPacketSize
        maxThroughput = self.maxThroughput
        ipv6 = self.addressFamily == socket.AF_INET6
        now = time.time
        first = True
        read = 0
        while read < maxThroughput:
            try:
                data, ancillary, _flags, addr = recvmsg(maxPacketSize, _ANCILLARY)
            except OSError as se:
                if se.args[0] in udp._sockErrReadIgnore or se.args[0] in udp._sockErrReadRefuse:
                    return
                raise
            read += len(data)
            if ancillary and (first or maxAge):
                level, kind, payload = ancillary[0]
                if level == _SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= _TIMESPEC_SIZE:
                    seconds, nanoseconds = _unpackTimespec(payload)
                    age = now() - seconds - nanoseconds * 1e-9
                    if first:
                        service.noteReceiveQueueDelay(age)
                        first = False
                    if maxAge and age > maxAge and data[:data.find(b" ", 0, 12)] in _NEW_WORK:
                        service.droppedStale(age, addr)
                        continue
            if ipv6:
                addr = addr[:2]
            try:
                receive(data, addr)
            except BaseException:
                from twisted.python import log

                log.err()

    def write(self, datagram: bytes, addr: tuple[str, int] | None = None) -> None:
        """
        L{udp.Port.write}, without re-checking an address already sent to:
        Twisted validates the host (an IP address of this socket's family,
        never a name) on every datagram, which costs more than the send.
        """
        if addr is not None and addr[0] in self._checkedHosts:
            try:
                self.socket.sendto(datagram, addr)
                return
            except OSError:
                pass  # Twisted's write handles (or raises) the error below
        super().write(datagram, addr)
        if addr is not None:
            if len(self._checkedHosts) >= _CHECKED_HOSTS_MAX:
                self._checkedHosts.clear()
            self._checkedHosts.add(addr[0])


def openDatagramPort(
    reactor: Any, protocol: SIPDatagramProtocol, host: str, port: int, family: int,
    reusePort: bool, receiveBuffer: int,
) -> tuple[SIPDatagramPort, int]:
    """
    Bind a UDP socket (with SO_REUSEPORT when asked, so worker processes
    share it), ask for C{receiveBuffer} bytes of receive buffer (0: the
    system default) and start reading it.  Returns the port and the
    receive buffer the kernel granted.
    """
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reusePort and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if receiveBuffer > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        except OSError:
            pass  # no kernel timestamps: the queue delay stays unmeasured
        sock.setblocking(False)
        sock.bind((host, port))
        # Linux reports twice the granted size (it counts its bookkeeping)
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        datagramPort = SIPDatagramPort._fromListeningDescriptor(
            reactor, sock.fileno(), family, protocol, maxPacketSize=65535
        )
        datagramPort.startListening()
        return datagramPort, granted
    finally:
        sock.close()  # the port holds its own duplicate of the descriptor
