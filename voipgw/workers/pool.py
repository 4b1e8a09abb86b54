# -*- test-case-name: tests.test_workers -*-
"""
The worker pool: the parent process of a node that runs one worker process
per core (see docs/workers.md).

L{WorkerPool} is a Twisted service: starting it spawns C{count} workers
(C{python -m voipgw.workers.child}), whose start Deferred fires once every
worker has printed its C{READY} line; a worker that exits while the pool
runs is started again after C{restartDelay} seconds (doubling up to
C{maxRestartDelay} while it keeps failing early); stopping the pool sends
SIGTERM to every worker and waits for them (SIGKILL after C{stopTimeout}).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet import defer, error, protocol
from twisted.logger import InvalidLogLevelError, Logger, LogLevel

from voipgw.config import NodeConfig


def configSections(config: NodeConfig) -> dict[str, dict[str, str]]:
    """The raw sections of C{config}, with the parsed [node] values written back."""
    sections = {name: dict(values) for name, values in config.sections.items()}
    node = sections.setdefault("node", {})
    node["listen"] = ", ".join(str(a) for a in config.listen)
    if config.domains:
        node["domain"] = ", ".join(config.domains)
    node["data_dir"] = os.path.abspath(config.dataDir)
    return sections


class WorkerProcess(protocol.ProcessProtocol):
    """One child: watches its stdout for READY, reports its end to the pool."""

    log = Logger()

    def __init__(self, pool: "WorkerPool", index: int) -> None:
        self.pool = pool
        self.index = index
        self.info: Optional[dict[str, Any]] = None
        self.ready: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.startedAt = pool.clock.seconds()
        self._buffer = b""
        self._errors = b""

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            text = line.decode("utf-8", "replace").strip()
            if text.startswith("READY ") and self.info is None:
                self.info = json.loads(text[6:])
                self.ready.callback(self.info)
            elif text.startswith("FAILED ") and not self.ready.called:
                self.ready.errback(RuntimeError(f"worker {self.index}: {text[7:]}"))
            elif text:
                self.log.info("worker {index}: {line}", index=self.index, line=text)

    def errReceived(self, data: bytes) -> None:
        """The worker's log lines (L{voipgw.workers.child.parentLogObserver}), re-emitted at their level."""
        self._errors += data
        while b"\n" in self._errors:
            raw, self._errors = self._errors.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            name, _, text = line.partition(" ")
            try:
                level = LogLevel.levelWithName(name)
            except InvalidLogLevelError:
                level, text = LogLevel.warn, line
            self.log.emit(level, "worker {index} {line}", index=self.index, line=text)

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"worker {self.index} exited before it was ready: {reason.value}"))
        self.ended.callback(None)
        self.pool.workerEnded(self, reason)


class WorkerPool(Service):
    """
    Runs C{count} worker processes of one node sharing its listeners.

    @param config: the node's L{NodeConfig} (sent to the workers as INI sections).
    @param count: the number of workers (at least 1).
    @param reactor: spawns the processes; C{clock} (default: the reactor) times restarts.
    @param runDir: directory for the spec file, the replication sockets and
        the worker logs (default: a new temporary directory).
    @param privatePortBase: worker C{i} binds its private listeners on
        C{privatePortBase + i} (so a restarted worker keeps its address); 0
        takes ephemeral ports.
    """

    name = "workers"
    log = Logger()
    restartDelay = 1.0
    maxRestartDelay = 30.0
    stopTimeout = 10.0

    def __init__(
        self,
        config: NodeConfig,
        count: int,
        reactor: Any,
        clock: Any = None,
        runDir: Optional[str] = None,
        privatePortBase: int = 0,
        logLevel: str = "info",
        python: str = sys.executable,
    ) -> None:
        if count < 1:
            raise ValueError("a node needs at least one worker")
        self.config = config
        self.count = count
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.runDir = runDir
        self.privatePortBase = privatePortBase
        self.logLevel = logLevel
        self.python = python
        self.workers: dict[int, WorkerProcess] = {}
        self.transports: dict[int, Any] = {}
        self.restarts: dict[int, int] = {}
        self._delays: dict[int, float] = {}
        self._pending: dict[int, Any] = {}
        self.specPath = ""

    def startService(self) -> "defer.Deferred[list[dict[str, Any]]]":  # type: ignore[override]
        Service.startService(self)
        if self.runDir is None:
            self.runDir = tempfile.mkdtemp(prefix="voipgw-workers-")
        os.makedirs(self.runDir, exist_ok=True)
        os.makedirs(self.config.dataDir, exist_ok=True)
        self._prepareShared()
        spec = {
            "sections": configSections(self.config),
            "count": self.count,
            "runDir": os.path.abspath(self.runDir),
            "privatePortBase": self.privatePortBase,
            "logLevel": self.logLevel,
        }
        self.specPath = os.path.join(self.runDir, "spec.json")
        with open(self.specPath, "w", encoding="utf-8") as f:
            json.dump(spec, f)
        readies = [self._spawn(i).ready for i in range(self.count)]
        return defer.ensureDeferred(self._awaitReady(readies))

    async def _awaitReady(self, readies: list["defer.Deferred[dict[str, Any]]"]) -> list[dict[str, Any]]:
        try:
            return await defer.gatherResults(readies, consumeErrors=True)
        except defer.FirstError as e:
            self.log.error("workers failed to start: {error}", error=e.subFailure.value)
            await self.stopService()
            e.subFailure.raiseException()
            raise  # not reached

    def _prepareShared(self) -> None:
        """
        Create what the workers share before they race to create it: the
        nonce secret and the embedded SQLite subscriber schema (two workers
        initialising a fresh database at once collided on schema_version).
        """
        from voipgw.auth.config import AuthConfig
        from voipgw.node import prepareEmbeddedSubscribers

        if self.config.domains:
            AuthConfig.fromSection(self.config.section("auth")).resolveSecret(self.config.dataDir)
        prepareEmbeddedSubscribers(self.config)

    def _spawn(self, index: int) -> WorkerProcess:
        worker = WorkerProcess(self, index)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))]
            + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        # -P: the current directory does not go first on sys.path, so a
        # worker imports the same voipgw as this process (the installed,
        # compiled one when twistd runs inside a source checkout)
        self.transports[index] = self.reactor.spawnProcess(
            worker, self.python, [self.python, "-P", "-m", "voipgw.workers.child", self.specPath, str(index)],
            env=env, childFDs={0: "w", 1: "r", 2: "r"},
        )
        self.workers[index] = worker
        return worker

    def workerEnded(self, worker: WorkerProcess, reason: Any) -> None:
        if self.workers.get(worker.index) is not worker:
            return
        self.transports.pop(worker.index, None)
        if not self.running:
            return
        lived = self.clock.seconds() - worker.startedAt
        delay = self._delays.get(worker.index, self.restartDelay)
        delay = self.restartDelay if lived > 60 else min(delay * 2, self.maxRestartDelay)
        self._delays[worker.index] = delay
        self.restarts[worker.index] = self.restarts.get(worker.index, 0) + 1
        self.log.warn("worker {index} exited ({reason}); restarting in {delay}s", index=worker.index,
                      reason=str(reason.value), delay=delay)
        self._pending[worker.index] = self.clock.callLater(delay, self._restart, worker.index)

    def _restart(self, index: int) -> None:
        self._pending.pop(index, None)
        if self.running:
            self._spawn(index)

    def stopService(self) -> "defer.Deferred[None]":  # type: ignore[override]
        Service.stopService(self)
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        waits = []
        for index, transport in list(self.transports.items()):
            worker = self.workers[index]
            waits.append(worker.ended)
            try:
                transport.signalProcess("TERM")
            except error.ProcessExitedAlready:
                continue
            killer = self.clock.callLater(self.stopTimeout, self._kill, transport)
            worker.ended.addCallback(self._cancelKiller, killer)
        return defer.DeferredList(waits).addCallback(lambda _: None)

    @staticmethod
    def _cancelKiller(result: None, killer: Any) -> None:
        if killer.active():
            killer.cancel()

    @staticmethod
    def _kill(transport: Any) -> None:
        try:
            transport.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass

    def workerInfo(self) -> list[Optional[dict[str, Any]]]:
        """Each worker's READY data (pid, private ports), None while starting."""
        return [self.workers[i].info if i in self.workers else None for i in range(self.count)]


def defaultWorkerCount() -> int:
    """One worker per usable core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def workerSettings(config: NodeConfig) -> tuple[int, int]:
    """C{([node] workers, [node] worker_port_base)} with their defaults, validated."""
    from voipgw.config import Section

    section = Section("node", config.section("node"))
    count = section.getInt("workers", defaultWorkerCount(), 1, 256)
    base = section.getInt("worker_port_base", 0, 0, 65535)
    if base and base + count > 65536:
        from voipgw.errors import ConfigError

        raise ConfigError("[node] worker_port_base: worker_port_base + workers exceeds 65535")
    return count, base


def runWorkers(config: NodeConfig, count: Optional[int] = None, reactor: Any = None) -> Any:
    """
    The service the tap returns: with one worker, the node itself (built in
    this process); with more, a L{WorkerPool}.  C{count} overrides
    C{[node] workers} (default: the number of cores).
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    configured, base = workerSettings(config)
    count = configured if count is None else count
    if count <= 1:
        from voipgw.workers.compose import composeNode

        return composeNode(config, reactor)
    return WorkerPool(config, count, reactor, privatePortBase=base)
