# -*- test-case-name: tests.test_workers -*-
"""
One worker process: C{python -m voipgw.workers.child SPEC INDEX}.

C{SPEC} is the JSON file the pool wrote: the node's config sections, the
worker count, the run directory and the private ports.  The worker binds
the shared SIP listeners with SO_REUSEPORT and its private listeners,
replicates location changes to its peers, and prints one line
C{READY {json}} on stdout once it serves (its private ports), so the pool
knows it is up.  SIGTERM stops the node's services in order, then the
reactor.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import Any


#: Generation thresholds of a worker's collector.  A worker keeps tens of
#: thousands of transactions alive for timer J (32 s); with CPython's
#: defaults (700, 10, 10) every burst of messages promotes the objects of
#: the transactions in flight, and full collections over every live
#: transaction come often.  A larger young generation lets most per-message
#: objects die there (refcounting frees them before a collection sees
#: them) and makes full collections rarer (CPython still runs one only
#: when a quarter of the old generation is new, so memory stays bounded).
GC_THRESHOLDS = (5_000, 10, 100)


def tuneGC() -> None:
    """Apply L{GC_THRESHOLDS} (the benchmark calls this too)."""
    gc.set_threshold(*GC_THRESHOLDS)


def workerConfig(spec: dict[str, Any], index: int) -> Any:
    """The L{NodeConfig} of worker C{index}: shared listeners plus private ones."""
    from voipgw.config import parseConfig
    from voipgw.transport.address import Address

    config = parseConfig(spec["sections"])
    config.transport.reusePort = True
    base = int(spec.get("privatePortBase") or 0)
    private = []
    for address in config.listen:
        if address.transport in ("udp", "tcp"):
            port = base + index if base else 0
            private.append(Address(address.transport, address.host, port))
    # one private listener per transport and address family
    seen = set()
    unique = []
    for address in private:
        key = (address.transport, ":" in address.host)
        if key not in seen:
            seen.add(key)
            unique.append(address)
    config.transport.privateListen = unique
    return config


def watchParent(reactor: Any) -> None:
    """Stop the reactor when the parent's end of stdin closes (the parent is gone)."""
    from twisted.internet import abstract, main as imain

    class ParentPipe(abstract.FileDescriptor):
        def fileno(self) -> int:
            return 0

        def doRead(self) -> Any:
            try:
                data = os.read(0, 4096)
            except BlockingIOError:
                return None
            except OSError:
                return imain.CONNECTION_LOST
            return None if data else imain.CONNECTION_DONE

        def connectionLost(self, reason: Any) -> None:
            abstract.FileDescriptor.connectionLost(self, reason)
            if reactor.running:
                reactor.stop()

    os.set_blocking(0, False)
    pipe = ParentPipe(reactor)
    pipe.connected = 1
    pipe.startReading()


def parentLogObserver(stream: Any) -> Any:
    """
    Log events as C{LEVEL namespace: message} lines on C{stream} (the
    worker's stderr), which the parent re-emits into its own log at the same
    level, so C{twistd -l FILE} holds every worker's events.
    """
    from twisted.logger import formatEvent

    def observe(event: dict[str, Any]) -> None:
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        level = event.get("log_level")
        name = level.name if level is not None else "info"
        for number, line in enumerate(text.splitlines() or [""]):
            prefix = f"{name} {event.get('log_namespace', '-')}: " if number == 0 else f"{name} |"
            stream.write(prefix + line + "\n")
        stream.flush()

    return observe


def main(argv: list[str]) -> int:
    specPath, index = argv[0], int(argv[1])
    with open(specPath, encoding="utf-8") as f:
        spec = json.load(f)

    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import defer, reactor
    from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner

    level = LogLevel.levelWithName(spec.get("logLevel", "info"))
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(parentLogObserver(sys.stderr), [LogLevelFilterPredicate(level)])],
        redirectStandardIO=False,
    )

    from voipgw.workers.compose import composeNode
    from voipgw.workers.replication import ReplicatedLocationStore, ReplicationChannel

    config = workerConfig(spec, index)
    count = int(spec["count"])
    store = None
    channel = None
    if count > 1:
        backend = (config.section("location").get("backend") or "memory").strip().lower()
        if backend == "memory":
            store = ReplicatedLocationStore(None, reactor)  # composeNode sets the node's memory store
            channel = ReplicationChannel(spec["runDir"], index, count, store.receive)
            store.attach(channel)
    node = composeNode(config, reactor, store=store)
    from voipgw.gcwatch import GCWatch

    gcWatch = GCWatch(reactor)
    gcWatch.addGauges(node.counters)
    from voipgw.gcfreeze import OldObjectFreezer

    freezer = OldObjectFreezer(reactor, config.gcFreezeInterval) if config.gcFreezeInterval > 0 else None
    if freezer is not None:
        freezer.addGauges(node.counters)

    async def start() -> None:
        if channel is not None:
            channel.listen(reactor)
        try:
            await node.startService()
        except BaseException as e:
            print(f"FAILED {e}", flush=True)
            reactor.stop()
            return
        if store is not None:
            store.requestSync()
        # long-lived objects built at startup are never collected: keep
        # them out of the collector's generations (fewer, shorter pauses)
        tuneGC()
        gc.collect()
        gcWatch.install()
        if freezer is not None:
            freezer.start()  # freezes what start-up built, then every interval
        else:
            gc.freeze()
        ports = {
            listener.name: listener.port for listener in node.transports.privateListeners
        }
        print("READY " + json.dumps({"index": index, "pid": os.getpid(), "private": ports}), flush=True)

    stopping: list[bool] = []

    def stop() -> "defer.Deferred[None]":
        if stopping:
            return defer.succeed(None)
        stopping.append(True)
        d = defer.ensureDeferred(_stop())
        return d

    async def _stop() -> None:
        if freezer is not None:
            freezer.stop()
        await node.stopService()
        if channel is not None:
            await channel.close()

    # Only the parent stops a worker: group signals (Ctrl-C on twistd -n)
    # reach the parent, which stops the workers in order.  A worker whose
    # parent died (its stdin pipe closes) stops too, releasing the ports.
    os.setsid()
    watchParent(reactor)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()))
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    profileTo = os.environ.get("VOIPGW_WORKER_PROFILE")
    if profileTo:
        # developer aid (bench/): cProfile the whole worker, stats written at exit
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(reactor.run)
        profiler.dump_stats(f"{profileTo}.{index}")
        return 0
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
