#!/usr/bin/env python3
"""
The REGISTER path in one process: CPU per digest REGISTER exchange.

    python3 bench/register_path.py                      # 20,000 subscribers, cold then warm cache
    python3 bench/register_path.py -n 5000 --profile    # + cProfile of the cold pass
    python3 bench/register_path.py --replication none   # without the replicated store

N distinct subscribers are provisioned in a fresh SQLite database; each
exchange is REGISTER -> 401 -> REGISTER with Authorization -> 200, driven
through the real L{TransactionLayer} (on a recording fake transport: no
sockets for SIP), L{Registrar}, L{DigestAuthenticator},
L{SQLSubscriberStore} (its real database thread pool) and
L{MemoryLocationStore}, wrapped in L{ReplicatedLocationStore} whose channel
sends real Unix datagrams to a peer channel in the same process that applies
them to its own memory store (a 2-worker node: every worker also applies the
other's saves, so this is the node's cost per exchange).

Exchanges run with C{--window} of them in flight (as sipp does), on the real
reactor.  Reported per pass: wall time, process CPU (all threads, including
the database pool and the peer's apply) per exchange, the subscriber
lookups that hit the cache, missed (a database interaction) or were
coalesced, and the database queries made.  The client's own work (digest
response computation, building its messages) is measured separately and
subtracted.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import os
import pstats
import re
import shutil
import sys
import tempfile
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("VOIPGW_PATH") or os.path.dirname(HERE))

from twisted.internet import defer, reactor  # noqa: E402

from voipgw.auth.digest import DigestAuthenticator  # noqa: E402
from voipgw.location.memory import MemoryLocationStore  # noqa: E402
from voipgw.registrar.config import RegistrarConfig  # noqa: E402
from voipgw.registrar.service import Registrar  # noqa: E402
from voipgw.sip.message import Response  # noqa: E402
from voipgw.subscribers import queries  # noqa: E402
from voipgw.subscribers.schema import MIGRATOR  # noqa: E402
from voipgw.subscribers.service import subscriberStoreFromConfig  # noqa: E402
from voipgw.testing.transport import FakeTransportService  # noqa: E402
from voipgw.transaction.layer import TransactionLayer  # noqa: E402
from voipgw.transport.address import Address  # noqa: E402
from voipgw.workers.child import GC_THRESHOLDS  # noqa: E402
from voipgw.workers.replication import ReplicatedLocationStore, ReplicationChannel  # noqa: E402

DOMAIN = "bench.example"
_PARAM = re.compile(r'(\w+)="?([^",]*)"?')


class NotifyingTransport(FakeTransportService):
    """The fake transport, telling the driver about each response (by Call-ID)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.onResponse: Callable[[Response], None] = lambda r: None

    def sendResponse(self, response: Response, source: Any = None, onError: Any = None) -> None:
        # no recording (it would keep every message alive): just hand it on
        response.toBytes()
        self.onResponse(response)


def provision(path: str, count: int) -> list[tuple[str, str]]:
    from sqlalchemy import create_engine

    users = [(f"u{i:06d}", f"pw-{i:06d}") for i in range(count)]
    engine = create_engine(f"sqlite:///{path}", future=True)
    with engine.begin() as conn:
        MIGRATOR.initialise(conn)
        now = time.time()
        rows = [queries.importRow(u, DOMAIN, p, now) for u, p in users]
        for start in range(0, len(rows), 5000):
            queries.insertMany(conn, rows[start:start + 5000])
    engine.dispose()
    return users


def request(user: str, callId: str, cseq: int, branch: str, port: int, auth: str = "") -> bytes:
    return (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:{user}@{DOMAIN}>;tag={callId}\r\n"
        f"To: <sip:{user}@{DOMAIN}>\r\n"
        f"Call-ID: {callId}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@127.0.0.1:{port}>\r\n"
        f"Expires: 3600\r\n"
        f"{auth}"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


class Driver:
    """Runs the exchanges with C{window} in flight; fires C{done} at the end."""

    def __init__(self, transports: NotifyingTransport, users: list[tuple[str, str]], window: int, tag: str) -> None:
        self.transports = transports
        self.users = users
        self.window = window
        self.tag = tag
        self.next = 0
        self.finished = 0
        self.failed = 0
        self.clientCPU = 0.0
        self.state: dict[str, tuple[int, int]] = {}  # callId -> (user index, port)
        self.done: defer.Deferred[None] = defer.Deferred()
        self.toLaunch = 0
        self.pumping = False
        transports.onResponse = self.response

    def start(self) -> "defer.Deferred[None]":
        self.toLaunch = min(self.window, len(self.users))
        self.pump()
        return self.done

    def pump(self) -> None:
        # a trampoline: an exchange answered synchronously (warm cache)
        # must not start the next one from inside its own call stack
        if self.pumping:
            return
        self.pumping = True
        try:
            while self.toLaunch > 0 and self.next < len(self.users):
                self.toLaunch -= 1
                self.launch()
        finally:
            self.pumping = False

    def launch(self) -> None:
        i = self.next
        self.next += 1
        user = self.users[i][0]
        callId = f"{self.tag}-{i}"
        port = 10000 + i % 50000
        self.state[callId] = (i, port)
        t0 = time.process_time()
        data = request(user, callId, 1, f"{callId}a", port)
        self.clientCPU += time.process_time() - t0
        self.transports.receive(data, Address("udp", "127.0.0.1", port))

    def response(self, response: Response) -> None:
        callId = response.getHeader("Call-ID")
        assert callId is not None
        i, port = self.state[callId]
        user, password = self.users[i]
        if response.code == 401:
            t0 = time.process_time()
            header = response.getHeader("WWW-Authenticate") or ""
            params = dict(_PARAM.findall(header[len("Digest "):]))
            realm, nonce = params["realm"], params["nonce"]
            uri = f"sip:{DOMAIN}"
            ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
            ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
            cnonce, nc = "0a4f113b", "00000001"
            digest = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
            auth = (f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
                    f'response="{digest}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"\r\n')
            data = request(user, callId, 2, f"{callId}b", port, auth)
            self.clientCPU += time.process_time() - t0
            self.transports.receive(data, Address("udp", "127.0.0.1", port))
            return
        del self.state[callId]
        if response.code != 200:
            self.failed += 1
            if self.failed <= 3:
                print(f"  unexpected {response.code} {response.reason} for {user}", flush=True)
        self.finished += 1
        if self.next < len(self.users):
            self.toLaunch += 1
            self.pump()
        elif self.finished == len(self.users):
            self.done.callback(None)


async def run(options: argparse.Namespace) -> None:
    work = tempfile.mkdtemp(prefix="voipgw-regbench-")
    try:
        await _run(options, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _run(options: argparse.Namespace, work: str) -> None:
    count = options.count
    t0 = time.perf_counter()
    db = os.path.join(work, "subscribers.sqlite")
    users = provision(db, count)
    print(f"provisioned {count} subscribers in {time.perf_counter() - t0:.1f} s", flush=True)

    store = subscriberStoreFromConfig(f"sqlite:///{db}", [], reactor, cacheTTL=3600, cacheSize=100_000)
    store.master.start()
    try:
        await _passes(options, work, users, store)
    finally:
        store.master.stop()


async def _passes(options: argparse.Namespace, work: str, users: list[tuple[str, str]], store: Any) -> None:
    count = len(users)
    preload = getattr(store, "preload", None)
    if options.preload and preload is not None:
        t0 = time.perf_counter()
        loaded = await preload()
        print(f"preloaded {loaded} subscribers in {time.perf_counter() - t0:.2f} s", flush=True)
    auth = DigestAuthenticator(store, os.urandom(32), reactor, algorithms=("MD5",), maxFailures=0)
    memory = MemoryLocationStore(reactor)
    location: Any = memory
    channels: list[ReplicationChannel] = []
    peerMemory = None
    if options.replication == "real":
        runDir = os.path.join(work, "run")
        os.makedirs(runDir)
        location = ReplicatedLocationStore(memory, reactor)
        mine = ReplicationChannel(runDir, 0, 2, location.receive)
        location.attach(mine)
        peerMemory = MemoryLocationStore(reactor)
        peer = ReplicatedLocationStore(peerMemory, reactor)
        theirs = ReplicationChannel(runDir, 1, 2, peer.receive)
        peer.attach(theirs)
        channels = [mine, theirs]
        for c in channels:
            c.listen(reactor)
    registrar = Registrar(RegistrarConfig(), location, auth, [DOMAIN], reactor)
    transports = NotifyingTransport(reactor, listen=[Address("udp", "127.0.0.1", 5060)])
    TransactionLayer(transports, reactor, user=registrar)

    # as a worker runs (voipgw.workers.child): start-up objects frozen, fewer collections
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    passes = [("cold", users), ("warm", users)] if not options.only else [(options.only, users)]
    for name, subset in passes:
        queriesBefore = store.master.queries
        hits, misses, coalesced = store.cache.hits, store.cache.misses, store.cache.coalesced
        driver = Driver(transports, subset, options.window, name)
        profiler = cProfile.Profile() if options.profile and name == (options.profile_pass or "cold") else None
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        await driver.start()
        if peerMemory is not None:
            # let the peer drain its socket before stopping the clock
            # let the peer drain its socket before stopping the clock (bounded:
            # datagrams the peer's queue refused are lost, see "dropped")
            deadline = time.perf_counter() + 2.0
            while len(peerMemory._aors) < len(memory._aors) and time.perf_counter() < deadline:
                await deferLater(0.001)
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        n = len(subset)
        server = cpu - driver.clientCPU
        print(
            f"{name:5}: {n} exchanges in {wall:.2f} s wall ({n / wall:,.0f}/s); "
            f"CPU {cpu * 1e6 / n:.0f} us/exchange, of which client {driver.clientCPU * 1e6 / n:.0f} -> "
            f"server {server * 1e6 / n:.0f} us/exchange; failed {driver.failed}",
            flush=True,
        )
        print(
            f"       subscriber lookups: {store.cache.hits - hits} hits, {store.cache.misses - misses} misses, "
            f"{store.cache.coalesced - coalesced} coalesced; DB queries {store.master.queries - queriesBefore} "
            f"({(store.master.queries - queriesBefore) / n:.3f}/exchange)",
            flush=True,
        )
        if profiler is not None:
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(options.top)
            stats.sort_stats("cumulative").print_stats(options.top)
            if options.profile_out:
                stats.dump_stats(options.profile_out)
    if channels:
        print(f"replication: datagrams sent {channels[0].sent}, dropped {channels[0].dropped}, AORs {len(memory._aors)}, "
              f"peer applied {len(peerMemory._aors) if peerMemory is not None else 0} AORs", flush=True)
        for c in channels:
            await c.close()


def deferLater(seconds: float) -> "defer.Deferred[None]":
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=20_000, help="subscribers (= exchanges per pass)")
    parser.add_argument("--window", type=int, default=200, help="exchanges in flight")
    parser.add_argument("--replication", choices=["real", "none"], default="real")
    parser.add_argument("--preload", action="store_true", help="preload the subscriber cache (if supported)")
    parser.add_argument("--only", choices=["cold", "warm"], help="run a single pass")
    parser.add_argument("--profile", action="store_true", help="cProfile one pass")
    parser.add_argument("--profile-pass", choices=["cold", "warm"], default=None)
    parser.add_argument("--profile-out", default=None, help="write the pstats file here")
    parser.add_argument("--top", type=int, default=30)
    options = parser.parse_args(argv)
    failure: list[Any] = []

    def go() -> None:
        d = defer.ensureDeferred(run(options))
        d.addErrback(failure.append)
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if failure:
        failure[0].printTraceback()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
