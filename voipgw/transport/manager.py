# -*- test-case-name: tests.test_transport_udp,tests.test_transport_stream -*-
"""
The transport service: listeners, outbound connections, and the rules of
RFC 3261 §18 for receiving requests and sending responses.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from voipgw.interfaces import IMessageReceiver, ISIPTransport
from voipgw.logutil import RateLimitedLog
from voipgw.sip.errors import SIPParseError
from voipgw.sip.message import DEFAULT_LIMITS, Limits, Message, Request, Response, parseMessage, responseTo
from voipgw.stats import Counters
from voipgw.transport.address import Address
from voipgw.transport.stream import SIPStreamFactory, SIPStreamProtocol
from voipgw.transport.tls import TLSSettings
from voipgw.transport.udp import SIPDatagramProtocol, openDatagramPort


#: Counter names of the common methods and status classes, built once so
#: the per-message path formats no string.
_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
            "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE")
_IN_REQUEST = {m: f"in.request.{m}" for m in _METHODS}
_OUT_REQUEST = {m: f"out.request.{m}" for m in _METHODS}
_IN_RESPONSE = tuple(f"in.response.{n}xx" for n in range(10))
#: What a UDP keepalive is made of (RFC 5626 §4.4.1 uses CRLF; NUL and space are seen too).
_KEEPALIVE_BYTES = b"\r\n\x00 "
#: Via transports (upper case, as L{Via} stores them) -> transport names.
_VIA_TRANSPORTS = {"UDP": "udp", "TCP": "tcp", "TLS": "tls"}


@dataclass
class TransportSettings:
    """Limits and timeouts for all listeners."""

    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)
    idleTimeout: float = 300.0
    connectTimeout: float = 5.0
    tls: TLSSettings = field(default_factory=TLSSettings)
    #: The address put in Via and Record-Route for listeners bound to a
    #: wildcard address (0.0.0.0 or ::), and recognised as this node's own.
    advertise: Optional[str] = None
    #: Bind the configured listeners with SO_REUSEPORT (UDP and TCP), so
    #: several worker processes share them (see docs/workers.md).
    reusePort: bool = False
    #: Listeners private to this process (never shared, port 0 allowed).
    #: When present they are preferred by L{TransportService.listenerFor}:
    #: requests this process originates or forwards carry their address in
    #: the Via (and Record-Route), so responses and in-dialog requests come
    #: back to this process.  Responses to received requests still leave
    #: through the socket the request arrived on.
    privateListen: list[Address] = field(default_factory=list)
    #: SO_RCVBUF asked for on UDP listeners (bytes; 0 keeps the system
    #: default).  A large buffer absorbs bursts (a registration storm, a
    #: GC pause) that would otherwise be dropped by the kernel and come
    #: back as retransmissions; Linux caps it at net.core.rmem_max.
    udpReceiveBuffer: int = 4 << 20


@implementer(ISIPTransport)
class Listener:
    """One bound listener: its configured and its actual address."""

    def __init__(self, spec: Address, port: Any, protocol: Any = None, advertise: Optional[str] = None) -> None:
        self.spec = spec
        self.portObject = port
        self.protocol = protocol
        address = port.getHost()
        self.name = spec.transport
        self.reliable = spec.transport != "udp"
        #: The address bound, and the one others reach this listener at (Via, Record-Route).
        self.bindHost = spec.host
        self.host = advertise if advertise and spec.host in WILDCARD_HOSTS else spec.host
        self.port = address.port

    @property
    def address(self) -> Address:
        return Address(self.name, self.host, self.port)

    def send(self, message: Message, destination: Address) -> None:
        raise NotImplementedError("send through TransportService.send")


WILDCARD_HOSTS = frozenset(["0.0.0.0", "::"])


def _isIPv6(host: str) -> bool:
    return ":" in host


def _familyMatches(listener: "Listener", host: str) -> bool:
    return _isIPv6(listener.bindHost) == _isIPv6(host)


class TransportService(Service):
    """
    Owns the SIP listeners (service name C{"transports"}).

    Parsed messages go to C{receiver} (the transaction layer).  A request
    that fails to parse but can be answered gets a stateless C{400} (or the
    fault's own status) naming the fault; anything else is dropped.  Every
    fault is counted and logged, rate-limited.
    """

    name = "transports"
    log = Logger()

    def __init__(
        self,
        reactor: Any,
        listen: list[Address],
        settings: Optional[TransportSettings] = None,
        counters: Optional[Counters] = None,
        clock: Any = None,
    ) -> None:
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.specs = list(listen)
        self.settings = settings or TransportSettings()
        self.counters = counters or Counters()
        self.receiver: Optional[IMessageReceiver] = None
        self.listeners: list[Listener] = []
        #: The subset of L{listeners} bound from C{settings.privateListen}.
        self.privateListeners: list[Listener] = []
        self.connections: dict[tuple[str, str, int], SIPStreamProtocol] = {}
        #: How long the last measured UDP datagram waited in the kernel
        #: before this process read it (L{SIPDatagramPort}).
        self.receiveQueueDelay = 0.0
        self._receiveQueueDelayAt = float("-inf")
        #: UDP requests starting new work that waited longer than this
        #: (seconds) in the receive queue are dropped unread; 0: never
        #: (set from [overload] max_queue_age by the node).
        self.maxQueueAge = 0.0
        self._faults = RateLimitedLog(self.log, self.clock)
        self.counters.addGauge("connections.open", lambda: len(self.connections))

    # -- service -----------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        try:
            for spec in self.specs:
                self.listeners.append(self._listen(spec, self.settings.reusePort))
            for spec in self.settings.privateListen:
                listener = self._listen(spec, False)
                self.listeners.append(listener)
                self.privateListeners.append(listener)
        except Exception:
            self._closeListeners()
            raise

    def _listen(self, spec: Address, reusePort: bool) -> Listener:
        host = spec.bareHost
        if spec.transport == "udp":
            protocol = SIPDatagramProtocol(self, spec)
            port = self._listenUDP(spec.port, protocol, host, reusePort)
            listener = Listener(spec, port, protocol, self.settings.advertise)
            protocol.local = listener.address
        else:
            factory = SIPStreamFactory(self, spec.transport)
            if spec.transport == "tls":
                options = self.settings.tls.serverOptions()
                port = self.reactor.listenSSL(spec.port, factory, options, interface=host, backlog=512)
            elif reusePort and hasattr(socket, "SO_REUSEPORT"):
                port = self._listenTCPShared(spec.port, factory, host)
            else:
                port = self.reactor.listenTCP(spec.port, factory, interface=host, backlog=512)
            listener = Listener(spec, port, advertise=self.settings.advertise)
        self.log.info("listening on {listener}", listener=str(listener.address))
        return listener

    def _listenTCPShared(self, portNumber: int, factory: Any, host: str) -> Any:
        """A TCP listener bound with SO_REUSEPORT: the kernel spreads connections over the processes."""
        family = socket.AF_INET6 if _isIPv6(host) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setblocking(False)
            sock.bind((host, portNumber))
            sock.listen(512)
            return self.reactor.adoptStreamPort(sock.fileno(), family, factory)
        finally:
            sock.close()

    def _listenUDP(self, portNumber: int, protocol: SIPDatagramProtocol, host: str, reusePort: Optional[bool] = None) -> Any:
        if reusePort is None:
            reusePort = self.settings.reusePort
        family = socket.AF_INET6 if _isIPv6(host) else socket.AF_INET
        wanted = self.settings.udpReceiveBuffer
        port, granted = openDatagramPort(self.reactor, protocol, host, portNumber, family, reusePort, wanted)
        if 0 < granted < wanted:
            self.log.info(
                "UDP receive buffer {granted} bytes (asked {wanted}; raise net.core.rmem_max for more)",
                granted=granted, wanted=wanted,
            )
        return port

    def noteReceiveQueueDelay(self, seconds: float) -> None:
        """A UDP listener read a datagram that had waited C{seconds} in the kernel."""
        self.receiveQueueDelay = max(0.0, seconds)
        self._receiveQueueDelayAt = self.clock.seconds()

    def droppedStale(self, age: float, addr: tuple) -> None:
        """A UDP listener dropped a request that had waited C{age} seconds (see L{maxQueueAge})."""
        self.counters.increment("dropped.stale")
        self._faults.warn(
            "stale", "dropped a request from {source} that waited {age:.3f}s in the receive queue "
            "(overload; {suppressed} similar suppressed)", source=f"{addr[0]}:{addr[1]}", age=age,
        )

    def currentReceiveQueueDelay(self) -> float:
        """
        The last measured wait in a UDP receive queue (seconds), or 0 when
        nothing was read for a second (an idle node has no queue).
        """
        if self.clock.seconds() - self._receiveQueueDelayAt > 1.0:
            return 0.0
        return self.receiveQueueDelay

    def _closeListeners(self) -> list:
        results = []
        for listener in self.listeners:
            results.append(defer.maybeDeferred(listener.portObject.stopListening))
        self.listeners = []
        self.privateListeners = []
        return results

    def stopService(self) -> defer.Deferred:
        super().stopService()
        waits = self._closeListeners()
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.loseConnection()
        self.connections.clear()
        return defer.DeferredList(waits)

    # -- queries -----------------------------------------------------------

    def listenerFor(self, transport: str, host: Optional[str] = None) -> Optional[Listener]:
        """
        The listener to send C{transport} messages from (matching the IP
        family); a private listener (C{settings.privateListen}) first.
        """
        fallback = None
        if self.privateListeners:
            for listener in self.privateListeners:
                if listener.name == transport and (host is None or _familyMatches(listener, host)):
                    return listener
        for listener in self.listeners:
            if listener.name == transport:
                if host is None or _familyMatches(listener, host):
                    return listener
                fallback = fallback or listener
        return fallback

    def isLocal(self, host: str, port: Optional[int]) -> bool:
        """True if C{host:port} names one of this node's listeners."""
        host = host[1:-1] if host.startswith("[") else host
        host = host.lower()
        for listener in self.listeners:
            if listener.host == host and (port is None or port == listener.port):
                return True
        return False

    # -- receiving ---------------------------------------------------------

    def connectionMade(self, connection: SIPStreamProtocol) -> None:
        assert connection.peer is not None
        key = (connection.transportName, connection.peer.bareHost, connection.peer.port)
        self.connections[key] = connection
        self.counters.increment(f"connections.{connection.transportName}.opened")

    def connectionLost(self, connection: SIPStreamProtocol) -> None:
        if connection.peer is None:
            return
        key = (connection.transportName, connection.peer.bareHost, connection.peer.port)
        if self.connections.get(key) is connection:
            del self.connections[key]

    def bytesReceived(self, data: bytes, source: Address, endpoint: Any, datagram: bool) -> None:
        """Parse one datagram or one framed stream message and deliver it."""
        # A keepalive is nothing but CR, LF, NUL or spaces: only a datagram
        # starting with one of them is stripped (a copy of the datagram)
        if datagram and (not data or data[0] in _KEEPALIVE_BYTES) and not data.strip(_KEEPALIVE_BYTES):
            self.counters.increment("keepalive.udp")
            return
        try:
            # parseMessage validates (RFC 3261 §8.1.1 headers, Request-URI,
            # CSeq method, Max-Forwards): no second validate() here
            message = parseMessage(data, self.settings.limits, datagram=datagram)
        except SIPParseError as error:
            try:
                self._parseFault(error, data, source, endpoint)
            except Exception:
                self.counters.increment("dropped")
                self.log.failure("cannot answer a bad message from {source}", source=str(source))
            return
        except Exception:
            self.counters.increment("parse_errors")
            self.log.failure("unexpected error parsing a message from {source}", source=str(source))
            return
        if isinstance(message, Request):
            method = message.method
            name = _IN_REQUEST.get(method)
            if name is None:
                name = f"in.request.{method}" if len(method) <= 20 else "in.request.other"
            self.counters.increment(name)
            self._markReceived(message, source)
        else:
            self.counters.increment(_IN_RESPONSE[message.code // 100 % 10])
        if self.receiver is not None:
            self.receiver.receiveMessage(message, source)

    def framingError(self, connection: SIPStreamProtocol, head: bytes, reason: str) -> None:
        """A stream message whose size cannot be trusted: answer if possible."""
        assert connection.peer is not None
        try:
            message = parseMessage(head, self.settings.limits, datagram=True)
            message.validate()
        except SIPParseError as error:
            message = error.request  # type: ignore[assignment]
        except Exception:
            message = None  # type: ignore[assignment]
        self._faults.warn("framing", "unframeable message from {source}: {reason} ({suppressed} similar suppressed)", source=str(connection.peer), reason=reason)
        if isinstance(message, Request) and message.method != "ACK":
            self._answerFault(message, 400, reason, connection.peer)

    def _parseFault(self, error: SIPParseError, data: bytes, source: Address, endpoint: Any) -> None:
        self.counters.increment("parse_errors")
        request = error.request
        answered = False
        if isinstance(request, Request) and request.method != "ACK":
            answered = self._answerFault(request, error.status, error.reason, source)
        self._faults.warn(
            "parse",
            "bad message from {source}: {reason} ({action}; {suppressed} similar suppressed)",
            source=str(source), reason=error.reason, action="answered" if answered else "dropped",
        )
        if not answered:
            self.counters.increment("dropped")

    def _answerFault(self, request: Request, status: int, reason: str, source: Address) -> bool:
        """Send a stateless error for a request that did not parse fully."""
        try:
            vias = request.vias
            if not vias:
                return False
            for name in ("From", "To", "Call-ID", "CSeq"):
                if request.getHeader(name) is None:
                    return False
        except SIPParseError:
            return False
        phrase = _phrase(status, reason)
        response = responseTo(request, status, phrase)
        self._markReceived(request, source)
        # The Vias as parsed (leniently, for a malformed one): the answer is
        # routed by them and carries them in a form that parses again.
        response.setHeaderValues("Via", [str(via) for via in vias])
        response._cache["Via"] = list(vias)
        self.counters.increment(f"out.response.{status // 100}xx")
        self.sendResponse(response, source)
        return True

    @staticmethod
    def _markReceived(request: Request, source: Address) -> None:
        """Add received/rport to the top Via (RFC 3261 §18.2.1, RFC 3581 §4)."""
        try:
            via = request.topVia
        except SIPParseError:
            return
        params = via.params
        host = source.bareHost
        if "rport" in params and not params["rport"]:
            params["rport"] = str(source.port)
            params["received"] = host
        elif via.host != host and via.host.strip("[]").lower() != host.lower():
            params["received"] = host
        else:
            return
        # rewrite the top Via's line in place (the parsed Vias stay valid:
        # the top one is the object just changed)
        headers = request.headers
        for index, (name, value) in enumerate(headers):
            if name == "Via":
                if "," not in value:
                    headers[index] = ("Via", str(via))
                    return
                break  # several Vias folded into the first line: rebuild them
        vias = request.vias
        values = request.getHeaderValues("Via")
        values[0] = str(via)
        request.setHeaderValues("Via", values)
        request._cache["Via"] = vias

    # -- sending -----------------------------------------------------------

    def responseDestination(self, response: Response, source: Optional[Address] = None) -> Address:
        """
        Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4): the
        connection the request came on when it is still open, else
        C{received}/C{rport} of the top Via, else its sent-by.
        """
        via = response.topVia
        if source is not None and source.reliable and source.connection is not None and source.connection.connected:
            return source
        params = via.params
        host = params.get("received") or via.host
        if source is None:
            maddr = params.get("maddr")
            if maddr:
                host = maddr
        transport = _VIA_TRANSPORTS.get(via.transport) or _VIA_TRANSPORTS.get(via.transport.upper())
        if "rport" in params:
            rport = params["rport"] or ""
            if rport and rport.isdigit():
                port = int(rport)
            elif source is not None and transport == "udp" and rport == "":
                port = source.port
            else:
                port = via.sentByPort
        else:
            port = via.sentByPort
        if transport is None:
            transport = source.transport if source else "udp"
        if host.startswith("[") or host.endswith("]"):
            host = host.strip("[]")
        if source is not None and source.port == port and source.host == host and source.transport == transport:
            # the usual UDP answer (received/rport filled in from the
            # source): the same address, already built
            return source
        return Address(transport, host, port)

    def sendResponse(
        self, response: Response, source: Optional[Address] = None,
        onError: Optional[Callable[[str], None]] = None,
    ) -> None:
        """
        Send a response where RFC 3261 §18.2.2 says; C{onError(reason)} on
        failure.  Over UDP it leaves through the socket the request arrived
        on (RFC 3581 §4: from the address and port the request was received
        on), which C{source.connection} names.
        """
        destination = self.responseDestination(response, source)
        if (
            destination.transport == "udp" and source is not None and source.transport == "udp"
            and isinstance(source.connection, SIPDatagramProtocol) and source.connection.transport is not None
        ):
            try:
                source.connection.sendBytes(response.toBytes(), destination)
            except Exception as e:
                self._sendFailed(onError, destination, str(e), response)
            return
        self.send(response, destination, onError)

    def send(self, message: Message, destination: Address, onError: Optional[Callable[[str], None]] = None) -> None:
        """Serialise and send C{message}; C{onError(reason)} on a transport failure."""
        data = message.toBytes()
        if isinstance(message, Request):
            method = message.method
            name = _OUT_REQUEST.get(method)
            if name is None:
                name = f"out.request.{method}" if len(method) <= 20 else "out.request.other"
            self.counters.increment(name)
        if destination.transport == "udp":
            listener = self.listenerFor("udp", destination.bareHost)
            if listener is None:
                self._sendFailed(onError, destination, "no UDP listener")
                return
            try:
                listener.protocol.sendBytes(data, destination)
            except Exception as e:
                self._sendFailed(onError, destination, str(e), message)
            return
        connection = destination.connection
        if connection is None or not connection.connected:
            connection = self.connections.get((destination.transport, destination.bareHost, destination.port))
        if connection is None:
            connection = self._connect(destination, onError)
            if connection is None:
                return
        connection.sendBytes(data, destination)

    def _sendFailed(self, onError: Optional[Callable[[str], None]], destination: Address, reason: str,
                    message: Optional[Message] = None) -> None:
        self.counters.increment("send_errors")
        what = ""
        if message is not None:
            try:
                what = f"{message.startLine()[:80]} (Call-ID {(message.callId or '')[:80]}, Via {(message.getHeader('Via') or '')[:120]})"
            except Exception:
                what = message.startLine()[:80]
        self._faults.warn("send", "cannot send {message} to {destination}: {reason} ({suppressed} similar suppressed)",
                          message=what or "a message", destination=str(destination), reason=reason)
        if onError is not None:
            self.clock.callLater(0, onError, reason)

    def _connect(self, destination: Address, onError: Optional[Callable[[str], None]]) -> Optional[SIPStreamProtocol]:
        host = destination.bareHost
        protocol = SIPStreamProtocol(self, destination.transport, outbound=True)
        protocol.peer = Address(destination.transport, host, destination.port, protocol)
        key = (destination.transport, host, destination.port)
        timeout = self.settings.connectTimeout
        if destination.transport == "tls":
            try:
                options = self.settings.tls.clientOptions(host)
            except Exception as e:
                self._sendFailed(onError, destination, f"TLS setup failed: {e}")
                return None
            endpoint: Any = SSL4ClientEndpoint(self.reactor, host, destination.port, options, timeout=timeout)
        elif _isIPv6(host):
            endpoint = TCP6ClientEndpoint(self.reactor, host, destination.port, timeout=timeout)
        else:
            endpoint = TCP4ClientEndpoint(self.reactor, host, destination.port, timeout=timeout)
        self.connections[key] = protocol
        from twisted.internet.endpoints import connectProtocol

        d = connectProtocol(endpoint, protocol)

        def failed(failure: Any) -> None:
            if self.connections.get(key) is protocol:
                del self.connections[key]
            protocol.pending = []
            self._sendFailed(onError, destination, failure.getErrorMessage())

        d.addErrback(failed)
        return protocol


def _phrase(status: int, reason: str) -> str:
    from voipgw.sip.message import REASON_PHRASES

    base = REASON_PHRASES.get(status, "Bad Request")
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in reason)[:100]
    return f"{base} ({text})" if text else base
