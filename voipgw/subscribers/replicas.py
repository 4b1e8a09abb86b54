# -*- test-case-name: tests.test_subscribers_replicas -*-
"""
Which database serves reads: the health of a master's replicas.

L{ReplicaSet} is explicit state: replicas are in or out, chosen round-robin
among those in.  It knows nothing of SQL; L{ReplicaProber} checks each
replica's replication lag on an injected clock and moves replicas in and
out of the set.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Sequence, TypeVar

from twisted.internet import defer, task
from twisted.logger import Logger

from twisted.python.failure import Failure

from voipgw.db.errors import describeError
from voipgw.subscribers.queries import ReplicationStatus

D = TypeVar("D")


class ReplicaSet(Generic[D]):
    """
    The replicas of one master; C{name(member)} labels them for logs.

    All replicas start I{in}.  L{choose} returns the next one in round-robin
    order among those in, or C{None} when none is: callers then read from
    the master.
    """

    log = Logger()

    def __init__(self, members: Sequence[D], name: Callable[[D], str] = str) -> None:
        self.members = tuple(members)
        self._name = name
        self._out: dict[int, str] = {}
        self._next = 0

    def healthy(self) -> list[D]:
        return [m for i, m in enumerate(self.members) if i not in self._out]

    def isHealthy(self, member: D) -> bool:
        return self._index(member) not in self._out

    def outReason(self, member: D) -> str | None:
        return self._out.get(self._index(member))

    def _index(self, member: D) -> int:
        for i, m in enumerate(self.members):
            if m is member:
                return i
        raise KeyError(member)

    def choose(self, exclude: Sequence[D] = ()) -> D | None:
        """The next healthy replica not in C{exclude}, round-robin; or C{None}."""
        count = len(self.members)
        for step in range(count):
            i = (self._next + step) % count
            member = self.members[i]
            if i in self._out or any(member is e for e in exclude):
                continue
            self._next = (i + 1) % count
            return member
        return None

    def markDown(self, member: D, reason: str) -> None:
        i = self._index(member)
        if i not in self._out:
            self.log.warn(
                "replica {replica} taken out of service: {reason}",
                replica=self._name(member),
                reason=reason,
            )
        self._out[i] = reason

    def markUp(self, member: D) -> None:
        i = self._index(member)
        if self._out.pop(i, None) is not None:
            self.log.info("replica {replica} back in service", replica=self._name(member))


class ReplicaProber(Generic[D]):
    """
    Every C{interval} seconds on C{clock}, check the master (C{probeMaster()},
    a Deferred firing when it answers) and each replica (C{probe(replica)},
    a Deferred firing with a L{ReplicationStatus}), and move replicas in and
    out of C{replicas}:

      - a replica that does not answer is out;
      - a replica lagging more than C{maxLag} seconds is out;
      - a replica with unknown lag is out (replication broken) unless its SQL
        thread runs, its I/O thread does not and the master does not answer
        us either: then the master is down and the replica, holding the last
        replicated state, keeps serving reads;
      - otherwise it is in.
    """

    log = Logger()

    def __init__(
        self,
        replicas: ReplicaSet[D],
        probe: Callable[[D], "defer.Deferred[ReplicationStatus]"],
        clock: Any,
        interval: float,
        maxLag: float,
        probeMaster: Callable[[], "defer.Deferred[Any]"] | None = None,
    ) -> None:
        self.replicas = replicas
        self._probe = probe
        self._probeMaster = probeMaster
        self._clock = clock
        self.interval = interval
        self.maxLag = maxLag
        self._loop: task.LoopingCall | None = None
        self._running: defer.Deferred[None] | None = None
        self._idleWaiters: list[defer.Deferred[None]] = []
        self.masterUp = True
        self.rounds = 0

    def start(self, now: bool = True) -> None:
        """Probe now (unless C{now} is false) and every C{interval} seconds."""
        if self._loop is not None or not self.replicas.members:
            return
        self._loop = task.LoopingCall(self.probeAll)
        self._loop.clock = self._clock
        self._loop.start(self.interval, now=now).addErrback(
            lambda f: self.log.failure("replica probing stopped", f)
        )

    def stop(self) -> "defer.Deferred[None]":
        """Stop probing; the Deferred fires once a probe round in flight ends."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return self.whenIdle()

    def whenIdle(self) -> "defer.Deferred[None]":
        """A Deferred firing when no probe round is in flight."""
        if self._running is None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idleWaiters.append(d)
        return d

    def probeAll(self) -> "defer.Deferred[None]":
        """Probe the master and every replica once (the timer calls this)."""
        if self._running is not None:
            return self.whenIdle()
        self._running = defer.ensureDeferred(self._probeAll())
        self._running.addBoth(self._done)
        return self.whenIdle()

    def _done(self, result: Any) -> None:
        self._running = None
        waiters, self._idleWaiters = self._idleWaiters, []
        if isinstance(result, Failure):
            self.log.failure("replica probe round failed", result)
        for waiter in waiters:
            waiter.callback(None)

    async def _probeAll(self) -> None:
        self.rounds += 1
        if self._probeMaster is not None:
            try:
                await self._probeMaster()
            except Exception as e:
                if self.masterUp:
                    self.log.warn("master does not answer: {error}", error=describeError(e))
                self.masterUp = False
            else:
                if not self.masterUp:
                    self.log.info("master answers again")
                self.masterUp = True
        await defer.DeferredList(
            [defer.ensureDeferred(self._probeOne(member)) for member in self.replicas.members],
            consumeErrors=True,
        )

    async def _probeOne(self, member: D) -> None:
        try:
            status = await self._probe(member)
        except Exception as e:
            self.replicas.markDown(member, f"probe failed: {describeError(e)}")
            return
        if status.lag is not None and status.sqlRunning:
            if status.lag > self.maxLag:
                self.replicas.markDown(member, f"replication lag {status.lag:g}s above {self.maxLag:g}s")
            else:
                self.replicas.markUp(member)
        elif status.sqlRunning and not status.ioRunning and not self.masterUp:
            # The master is down for us and for the replica: the replica has
            # everything the master managed to send; the best we have.
            self.replicas.markUp(member)
        else:
            detail = f": {status.error}" if status.error else ""
            self.replicas.markDown(member, f"replication is not running{detail}")
