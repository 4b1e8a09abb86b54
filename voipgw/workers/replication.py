# -*- test-case-name: tests.test_workers_replication -*-
"""
Location replication between the worker processes of one node.

Every worker keeps the whole location table in its own memory store; a
change made by one worker (a REGISTER it handled) is applied locally and
sent to every other worker over a Unix datagram socket, as Kamailio's
C{dmq_usrloc} does between nodes.  A worker that starts (or restarts) asks
its peers for their table and receives it in chunks.

Messages are C{marshal}-encoded tuples of plain values (never pickle: a
peer is trusted only to send data):

 - C{("save", fields)}: one L{Binding} as the tuple of its fields;
 - C{("remove", aor, key)}, C{("removeAll", aor)};
 - C{("sync", index)}: worker C{index} asks for the table;
 - C{("bulk", [fields, ...])}: part of a table sent in answer to C{sync};
 - C{("batch", [message, ...])}: the saves/removes queued since the last
   flush (at most C{BULK_CHUNK} per datagram), in order.  Batching matters:
   Linux queues at most C{net.unix.max_dgram_qlen} (default 10) datagrams
   per Unix socket, so one datagram per REGISTER overflowed a busy peer's
   queue (measured: 76% dropped at 1,900 REGISTER/s in
   C{bench/register_path.py}); and every datagram wakes the peer, which
   under load costs it more than applying the change.  A change made after
   a quiet spell leaves on the next reactor turn; while changes keep
   coming, they leave at most every C{FLUSH_INTERVAL} seconds.

A replicated save is applied only if it is not older (C{updated}) than the
binding with the same key already stored, so a late message cannot undo a
newer change.  Delivery is best effort (a full peer queue drops the
message, counted in C{dropped}); the registrations are refreshed by the
devices within their expiry, which bounds any divergence.
"""

from __future__ import annotations

import dataclasses
import errno
import marshal
import operator
import os
import socket
from collections import deque
from typing import Any, Callable, Iterable, Optional, Protocol

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import classImplements

from voipgw.interfaces import ILocationStore
from voipgw.location.binding import Binding

_FIELDS = tuple(f.name for f in dataclasses.fields(Binding))

#: Bindings per C{bulk} datagram (each is a few hundred bytes).
BULK_CHUNK = 100

#: Under sustained changes, the longest a change waits before it is sent to
#: the peers (seconds).  A lookup on another worker may miss a binding for
#: this long after its REGISTER was answered.
FLUSH_INTERVAL = 0.005


_bindingFields = operator.attrgetter(*_FIELDS)


def bindingToTuple(binding: Binding) -> tuple:
    """The fields of C{binding}, in declaration order."""
    return _bindingFields(binding)  # type: ignore[no-any-return]


_NFIELDS = len(_FIELDS)


def bindingFromTuple(values: Iterable[Any]) -> Binding:
    """The inverse of L{bindingToTuple}."""
    if type(values) is tuple and len(values) == _NFIELDS:
        return Binding(*values)
    values = tuple(values)
    if len(values) == len(_FIELDS):
        return Binding(*values)
    return Binding(**dict(zip(_FIELDS, values)))


def socketPath(runDir: str, index: int) -> str:
    """The replication socket of worker C{index}."""
    return os.path.join(runDir, f"worker-{index}.sock")


class ReplicationChannel(DatagramProtocol):
    """
    The Unix datagram endpoint of one worker: sends to the sockets of the
    other workers, hands what it receives to C{onMessage(message)}.
    """

    log = Logger(namespace="voipgw.workers.replication.ReplicationChannel")
    noisy = False

    def __init__(self, runDir: str, index: int, count: int, onMessage: Callable[[tuple], None]) -> None:
        self.runDir = runDir
        self.index = index
        self.count = count
        self.onMessage = onMessage
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.port: Any = None
        self.reactor: Any = None
        # peer -> datagrams its full queue refused, to send again in order
        self._backlog: dict[int, deque[bytes]] = {}
        self._retrying = False

    #: Datagrams kept per peer while its queue is full (beyond: dropped).
    maxBacklog = 2000
    #: Seconds between attempts to send a backlog.
    retryDelay = 0.002

    @property
    def path(self) -> str:
        return socketPath(self.runDir, self.index)

    def peers(self) -> list[int]:
        return [i for i in range(self.count) if i != self.index]

    def listen(self, reactor: Any) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.reactor = reactor
        self.port = reactor.listenUNIXDatagram(self.path, self, maxPacketSize=1 << 20)
        sock = self.port.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def close(self) -> "defer.Deferred[None]":
        port, self.port = self.port, None
        if port is None:
            return defer.succeed(None)
        d = defer.maybeDeferred(port.stopListening)
        try:
            os.unlink(self.path)
        except OSError:
            pass
        return d

    def send(self, message: tuple, peer: Optional[int] = None) -> bool:
        """Send C{message} to C{peer}, or to every peer; False if any was dropped."""
        if self.port is None:
            return False
        data = marshal.dumps(message)
        ok = True
        for i in ([peer] if peer is not None else self.peers()):
            try:
                self.port.socket.sendto(data, socketPath(self.runDir, i))
                self.sent += 1
            except OSError as e:
                # the peer is not (yet) listening, or its queue is full
                self.dropped += 1
                ok = False
                if e.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN, errno.ENOBUFS):
                    self.log.warn("replication to worker {peer} failed: {error}", peer=i, error=str(e))
        return ok

    def sendBuffered(self, message: tuple) -> None:
        """
        Send C{message} to every peer; a datagram a full peer queue refuses
        waits in that peer's bounded backlog and is sent again (in order).
        """
        if self.port is None:
            return
        data = marshal.dumps(message)
        sock = self.port.socket
        for i in self.peers():
            backlog = self._backlog.get(i)
            if backlog:
                self._queue(i, backlog, data)
                continue
            try:
                sock.sendto(data, socketPath(self.runDir, i))
                self.sent += 1
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.ENOBUFS):
                    self._queue(i, self._backlog.setdefault(i, deque()), data)
                else:
                    self.dropped += 1
                    if e.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                        self.log.warn("replication to worker {peer} failed: {error}", peer=i, error=str(e))

    def _queue(self, peer: int, backlog: "deque[bytes]", data: bytes) -> None:
        if len(backlog) >= self.maxBacklog:
            backlog.popleft()
            self.dropped += 1
        backlog.append(data)
        if not self._retrying and self.reactor is not None:
            self._retrying = True
            self.reactor.callLater(self.retryDelay, self._retry)

    def _retry(self) -> None:
        self._retrying = False
        if self.port is None:
            self._backlog.clear()
            return
        sock = self.port.socket
        for peer, backlog in self._backlog.items():
            path = socketPath(self.runDir, peer)
            while backlog:
                try:
                    sock.sendto(backlog[0], path)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.ENOBUFS):
                        break
                    # the peer went away: its restart syncs the table
                    self.dropped += len(backlog)
                    backlog.clear()
                    break
                backlog.popleft()
                self.sent += 1
        if any(self._backlog.values()) and not self._retrying:
            self._retrying = True
            self.reactor.callLater(self.retryDelay, self._retry)

    def backlog(self) -> int:
        return sum(len(b) for b in self._backlog.values())

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # type: ignore[override]
        try:
            message = marshal.loads(data)
        except (ValueError, EOFError, TypeError):
            self.log.warn("malformed replication datagram ({size} bytes)", size=len(data))
            return
        if not isinstance(message, tuple) or not message:
            return
        self.received += 1
        try:
            self.onMessage(message)
        except Exception:
            self.log.failure("applying a replication message failed")


class Channel(Protocol):
    """What L{ReplicatedLocationStore} needs of its channel (a L{ReplicationChannel}, or a test's stand-in)."""

    onMessage: Callable[[tuple], None]
    index: int
    sent: int
    received: int
    dropped: int

    def send(self, message: tuple, peer: Optional[int] = None) -> bool: ...

    def sendBuffered(self, message: tuple) -> None: ...

    def backlog(self) -> int: ...


class ReplicatedLocationStore:
    """
    An L{ILocationStore} that applies every change to C{inner} (the
    worker's memory store) and replicates it through C{channel}.  Reads
    are served from C{inner}.
    """

    log = Logger(namespace="voipgw.workers.replication.ReplicatedLocationStore")

    def __init__(self, inner: Any, clock: Any, flushInterval: float = FLUSH_INTERVAL) -> None:
        self.inner = inner
        self.clock = clock
        self.flushInterval = flushInterval
        self.channel: Optional[Channel] = None
        self.applied = 0
        self.bulkSent = 0
        self._outbox: list[tuple] = []
        self._flushing = False
        self._lastFlush = float("-inf")

    def attach(self, channel: Channel) -> None:
        self.channel = channel
        channel.onMessage = self.receive

    # -- ILocationStore --------------------------------------------------------

    def start(self) -> "defer.Deferred[None]":
        return defer.maybeDeferred(self.inner.start)

    def stop(self) -> "defer.Deferred[None]":
        return defer.maybeDeferred(self.inner.stop)

    def lookup(self, aor: str, now: float) -> "defer.Deferred[list[Binding]]":
        return self.inner.lookup(aor, now)  # type: ignore[no-any-return]

    def save(self, binding: Binding) -> "defer.Deferred[None]":
        d = self.inner.save(binding)
        if self.channel is not None:
            self._replicate(("save", _bindingFields(binding)))
        return d  # type: ignore[no-any-return]

    def remove(self, aor: str, key: str) -> "defer.Deferred[bool]":
        d = self.inner.remove(aor, key)
        if self.channel is not None:
            self._replicate(("remove", aor, key))
        return d  # type: ignore[no-any-return]

    def removeAll(self, aor: str) -> "defer.Deferred[int]":
        d = self.inner.removeAll(aor)
        if self.channel is not None:
            self._replicate(("removeAll", aor))
        return d  # type: ignore[no-any-return]

    def _replicate(self, message: tuple) -> None:
        """
        Queue C{message}.  After a quiet spell it leaves on the next reactor
        turn (with whatever else that turn changes); while changes keep
        coming, a batch leaves at most every C{flushInterval} seconds, or
        as soon as it is full.
        """
        self._outbox.append(message)
        if len(self._outbox) >= BULK_CHUNK:
            self.flush()
        elif not self._flushing:
            self._flushing = True
            wait = self._lastFlush + self.flushInterval - self.clock.seconds()
            self.clock.callLater(max(0.0, wait), self._scheduledFlush)

    def _scheduledFlush(self) -> None:
        if self._flushing:
            self.flush()

    def flush(self) -> None:
        """Send the queued changes now (a C{batch} datagram per chunk)."""
        self._flushing = False
        self._lastFlush = self.clock.seconds()
        outbox, self._outbox = self._outbox, []
        if not outbox:
            return
        if self.channel is None:
            return
        if len(outbox) <= BULK_CHUNK:
            self.channel.sendBuffered(("batch", outbox))
            return
        for start in range(0, len(outbox), BULK_CHUNK):
            self.channel.sendBuffered(("batch", outbox[start:start + BULK_CHUNK]))

    def expire(self, now: float) -> "defer.Deferred[int]":
        # every worker expires its own copy on the shared wall clock
        return self.inner.expire(now)  # type: ignore[no-any-return]

    def count(self) -> "defer.Deferred[int]":
        return self.inner.count()  # type: ignore[no-any-return]

    def stats(self) -> dict[str, int]:
        stats = dict(getattr(self.inner, "stats", lambda: {})())
        if self.channel is not None:
            stats.update(replicationSent=self.channel.sent, replicationReceived=self.channel.received,
                         replicationDropped=self.channel.dropped, replicationBacklog=self.channel.backlog())
        stats["replicationApplied"] = self.applied
        return stats

    # -- replication -------------------------------------------------------------

    def requestSync(self) -> None:
        """Ask the peers for their tables (a worker that just started)."""
        if self.channel is not None:
            self.channel.send(("sync", self.channel.index))

    def receive(self, message: tuple) -> None:
        op = message[0]
        if op == "batch":
            self._applyBatch(message[1])
        elif op == "save":
            self._applySave(message[1])
        elif op == "bulk":
            for values in message[1]:
                self._applySave(values)
        elif op == "remove":
            self.inner.remove(message[1], message[2])
            self.applied += 1
        elif op == "removeAll":
            self.inner.removeAll(message[1])
            self.applied += 1
        elif op == "sync":
            self._sendTable(int(message[1]))
        else:
            self.log.warn("unknown replication message {op!r}", op=op)

    def _applyBatch(self, items: Iterable[Any]) -> None:
        """Apply the changes of a C{batch}, in order (saves without a call each)."""
        saveIfNewer = getattr(self.inner, "saveIfNewer", None)
        now = self.clock.seconds()
        applied = 0
        try:
            for item in items:
                if not isinstance(item, tuple) or not item:
                    continue
                op = item[0]
                if op == "save" and saveIfNewer is not None:
                    if saveIfNewer(bindingFromTuple(item[1]), now):
                        applied += 1
                elif op in ("save", "remove", "removeAll"):
                    self.receive(item)
        finally:
            self.applied += applied

    def _applySave(self, values: Any) -> None:
        binding = bindingFromTuple(values)
        saveIfNewer = getattr(self.inner, "saveIfNewer", None)
        if saveIfNewer is not None:
            if saveIfNewer(binding, self.clock.seconds()):
                self.applied += 1
            return
        if binding.expires <= self.clock.seconds():
            return
        current: list[Binding] = []
        self.inner.lookup(binding.aor, float("-inf")).addCallback(current.extend)
        for existing in current:
            if existing.key == binding.key and existing.updated > binding.updated:
                return
        self.inner.save(binding)
        self.applied += 1

    def _sendTable(self, peer: int) -> None:
        """Send every live binding to C{peer}, a chunk per reactor turn."""
        table = getattr(self.inner, "_aors", None)
        if table is None or self.channel is None:
            return
        snapshot = [b for bindings in list(table.values()) for b in bindings]
        channel = self.channel

        def sendFrom(start: int) -> None:
            chunk = snapshot[start:start + BULK_CHUNK]
            if not chunk:
                return
            if not channel.send(("bulk", [bindingToTuple(b) for b in chunk]), peer):
                # the peer's queue is full: try the same chunk again shortly
                self.clock.callLater(0.01, sendFrom, start)
                return
            self.bulkSent += len(chunk)
            self.clock.callLater(0, sendFrom, start + BULK_CHUNK)

        sendFrom(0)


# after the class statement: mypyc compiles this module (voipgw.build), and a
# class decorator other than mypyc's own does not go with a compiled class
# (with @implementer, Python subclasses of the compiled registrar were refused)
classImplements(ReplicatedLocationStore, ILocationStore)
