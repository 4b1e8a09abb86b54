# -*- test-case-name: tests.test_transport_stream -*-
"""
SIP over TCP and TLS: framing by Content-Length, RFC 5626 §3.5.1 CRLF
keep-alives, idle timeout and a bound on the header block.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from voipgw.transport.address import Address

if TYPE_CHECKING:
    from voipgw.transport.manager import TransportService

_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)", re.I | re.M)


class SIPStreamProtocol(Protocol):
    """
    One TCP or TLS connection.  Incoming bytes are cut into messages by
    their Content-Length; a double CRLF between messages is a keep-alive
    ping answered with a single CRLF pong.
    """

    log = Logger()
    #: the connection's transport; None once the connection is lost.
    #: (Declared here so that the type does not depend on whether mypy
    #: sees Twisted: the isolated mypyc build does not install it.)
    transport: Any

    def __init__(self, service: "TransportService", transportName: str, outbound: bool = False) -> None:
        self.service = service
        self.transportName = transportName
        self.outbound = outbound
        self._buffer = b""
        self._idleCall: Optional[Any] = None
        self.peer: Optional[Address] = None
        self.pending: list[bytes] = []
        self.connected = False

    # -- connection life ---------------------------------------------------

    def connectionMade(self) -> None:
        peer: Any = self.transport.getPeer()  # type: ignore[union-attr]
        self.peer = Address(self.transportName, peer.host, peer.port, self)
        self.connected = True
        self.service.connectionMade(self)
        self._resetIdle()
        for data in self.pending:
            self.transport.write(data)  # type: ignore[union-attr]
        self.pending = []

    def connectionLost(self, reason: Any = None) -> None:
        self.connected = False
        if self._idleCall is not None and self._idleCall.active():
            self._idleCall.cancel()
        self._idleCall = None
        self.service.connectionLost(self)
        # break the cycles protocol <-> transport and protocol -> peer ->
        # protocol, so the connection is freed by reference counting (a
        # worker freezes old objects, and frozen cycles are not collected)
        self.pending = []
        self.transport = None
        if self.peer is not None:
            self.peer = Address(self.peer.transport, self.peer.host, self.peer.port)

    def _resetIdle(self) -> None:
        timeout = self.service.settings.idleTimeout
        if not timeout:
            return
        if self._idleCall is not None and self._idleCall.active():
            self._idleCall.reset(timeout)
        else:
            self._idleCall = self.service.clock.callLater(timeout, self._idle)

    def _idle(self) -> None:
        self._idleCall = None
        self.log.info("closing idle {transport} connection from {peer}", transport=self.transportName, peer=str(self.peer))
        self.service.counters.increment("connections.idle_closed")
        self.transport.loseConnection()  # type: ignore[union-attr]

    def sendBytes(self, data: bytes, destination: Optional[Address] = None) -> None:
        if self.connected:
            self.transport.write(data)  # type: ignore[union-attr]
        else:
            self.pending.append(data)

    def abort(self, why: str) -> None:
        self.log.warn("dropping {transport} connection from {peer}: {why}", transport=self.transportName, peer=str(self.peer), why=why)
        self.service.counters.increment("connections.aborted")
        self._buffer = b""
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # -- framing -------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._resetIdle()
        buffer = self._buffer + data if self._buffer else data
        limits = self.service.settings.limits
        while buffer:
            if buffer[0] in b"\r\n":
                if buffer.startswith(b"\r\n\r\n"):
                    self.transport.write(b"\r\n")  # type: ignore[union-attr]
                    self.service.counters.increment("keepalive.ping")
                    buffer = buffer[4:]
                    continue
                if buffer.startswith(b"\r\n"):
                    if len(buffer) < 4 and buffer == b"\r\n\r"[: len(buffer)]:
                        break  # maybe the start of a ping; wait for more
                    buffer = buffer[2:]
                    continue
                if buffer == b"\r":
                    break
                buffer = buffer[1:]
                continue
            headEnd = buffer.find(b"\r\n\r\n")
            if headEnd < 0:
                if len(buffer) > limits.maxMessageSize:
                    self.service.counters.increment("parse_errors")
                    self.abort("header block exceeds the message size limit")
                    return
                break
            bodyStart = headEnd + 4
            match = _CONTENT_LENGTH.search(buffer, 0, headEnd)
            length = 0
            if match is not None:
                text = match.group(1)
                if not text.isdigit() or len(text) > 9:
                    self.service.counters.increment("parse_errors")
                    self.service.framingError(self, buffer[:bodyStart], f"bad Content-Length {text[:20]!r}")
                    self.abort("unframeable message (bad Content-Length)")
                    return
                length = int(text)
            if bodyStart + length > limits.maxMessageSize:
                self.service.counters.increment("parse_errors")
                self.service.framingError(self, buffer[:bodyStart], "message too large")
                self.abort("message exceeds the size limit")
                return
            end = bodyStart + length
            if len(buffer) < end:
                break
            message = buffer[:end]
            buffer = buffer[end:]
            assert self.peer is not None
            self.service.bytesReceived(message, self.peer, self, datagram=False)
            if not self.connected:
                return
        self._buffer = buffer


class SIPStreamFactory(Factory):
    """Builds L{SIPStreamProtocol}s for one listener or for outbound connections."""

    noisy = False

    def __init__(self, service: "TransportService", transportName: str, outbound: bool = False) -> None:
        self.service = service
        self.transportName = transportName
        self.outbound = outbound

    def buildProtocol(self, addr: Any) -> SIPStreamProtocol:
        return SIPStreamProtocol(self.service, self.transportName, self.outbound)
