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


def main(argv: list[str]) -> int:
    specPath, index = argv[0], int(argv[1])
    with open(specPath, encoding="utf-8") as f:
        spec = json.load(f)

    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import defer, reactor
    from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner, textFileLogObserver

    logFile = open(os.path.join(spec["runDir"], f"worker-{index}.log"), "a", encoding="utf-8")
    level = LogLevel.levelWithName(spec.get("logLevel", "info"))
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(logFile), [LogLevelFilterPredicate(level)])],
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
        gc.collect()
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
        await node.stopService()
        if channel is not None:
            await channel.close()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()))
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
