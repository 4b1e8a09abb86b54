#!/usr/bin/env python3
"""
CPU cost and memory of the common per-message path, in one process.

Drives N OPTIONS requests (distinct branches, Call-IDs and tags, as sipp
sends them) through the real path of a worker: C{SIPDatagramProtocol.
datagramReceived} -> C{TransportService.bytesReceived} (parse, validate,
received/rport) -> C{TransactionLayer} (a new non-INVITE server
transaction) -> C{RequestDispatcher} (overload guard, OPTIONS answered by
the node) -> response serialised and written to the UDP transport, whose
C{write} is a no-op (C{--sink} sends to a real UDP socket on loopback
instead).  Everything runs inside the real reactor, in batches of
C{--batch} requests per reactor turn, on the reactor's clock: each
transaction keeps its timer J (32 s), so at the end all N transactions are
alive, as in a worker at N/32 requests per second.

Reports: CPU microseconds per request (process time), wall-clock latency
per request (p50/p99/max, which shows GC pauses), garbage collections
(count, total and longest pause per generation, timed with
C{gc.callbacks}), live objects (C{len(gc.get_objects())}), live
transactions and RSS growth.  Like a worker, it calls C{gc.collect();
gc.freeze()} after start-up and applies the worker's GC settings
(L{voipgw.workers.child.tuneGC}) unless C{--no-gc-tuning}.

Usage: python3 bench/core_path.py [-n 50000] [--batch 50] [--retransmit 0.05]
       [--sink] [--profile FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

DOMAIN = "bench.example"

TEMPLATE = (
    "OPTIONS sip:{domain} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{n}-1-0;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:probe@{domain}>;tag={n}\r\n"
    "To: <sip:{domain}>\r\n"
    "Call-ID: {n}-4242@127.0.0.1\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Contact: <sip:probe@127.0.0.1:{port}>\r\n"
    "Accept: application/sdp\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)


def rssKiB() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class NullUDP:
    """The UDP port of the listener: C{write} sends nowhere (or to a sink socket)."""

    def __init__(self, sink: Any = None) -> None:
        self.sink = sink
        self.writes = 0
        self.bytes = 0

    def write(self, data: bytes, addr: Any = None) -> None:
        self.writes += 1
        self.bytes += len(data)
        if self.sink is not None:
            try:
                self.sink[0].sendto(data, self.sink[1])
            except BlockingIOError:
                pass


class GCTimer:
    """Times every collection through C{gc.callbacks}."""

    def __init__(self) -> None:
        self.start = 0.0
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.start = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self.start)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for generation, pauses in self.pauses.items():
            out[f"gen{generation}"] = {
                "count": len(pauses),
                "total_ms": round(sum(pauses) * 1000, 2),
                "max_ms": round(max(pauses) * 1000, 2) if pauses else 0.0,
            }
        every = [p for pauses in self.pauses.values() for p in pauses]
        out["all"] = {
            "count": len(every), "total_ms": round(sum(every) * 1000, 2),
            "max_ms": round(max(every) * 1000, 2) if every else 0.0,
        }
        return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(n: int, batch: int, retransmit: float, sink: bool, tuneGC: bool, profile: str | None) -> dict[str, Any]:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    from voipgw.dispatch import RequestDispatcher
    from voipgw.overload import OverloadGuard
    from voipgw.stats import Counters
    from voipgw.transaction.layer import TransactionLayer
    from voipgw.transport.address import Address
    from voipgw.transport.manager import TransportService
    from voipgw.transport.udp import SIPDatagramProtocol

    counters = Counters()
    transports = TransportService(reactor, [], counters=counters)
    dispatcher = RequestDispatcher(transports, domains=[DOMAIN], counters=counters)
    layer = TransactionLayer(transports, reactor, counters=counters, user=dispatcher)
    guard = OverloadGuard(reactor, gauge=lambda: len(layer.server) + len(layer.client))
    dispatcher.overload = guard
    protocol = SIPDatagramProtocol(transports, Address("udp", "127.0.0.1", 5060))
    sinkSocket = None
    if sink:
        sinkSocket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sinkSocket.bind(("127.0.0.1", 0))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.setblocking(False)
        udp = NullUDP((sender, sinkSocket.getsockname()))
    else:
        udp = NullUDP()
    protocol.transport = udp  # type: ignore[assignment]

    # sipp -t un: a source port per call (the kernel spreads them); a few
    # thousand distinct ports, as at the top of the ladder
    datagrams = [
        (TEMPLATE.format(domain=DOMAIN, port=20000 + i % 4000, n=i).encode(), ("127.0.0.1", 20000 + i % 4000))
        for i in range(n)
    ]
    every = int(1 / retransmit) if retransmit > 0 else 0

    if tuneGC:
        try:
            from voipgw.workers.child import tuneGC as tune
        except ImportError:  # older code: CPython's defaults
            pass
        else:
            tune()
    gc.collect()
    gc.freeze()
    timer = GCTimer()
    objectsBefore = len(gc.get_objects())
    rssBefore = rssKiB()
    latencies: list[float] = []
    result: dict[str, Any] = {}
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()

    def step(start: int) -> None:
        end = min(n, start + batch)
        perf = time.perf_counter
        receive = protocol.datagramReceived
        for i in range(start, end):
            data, addr = datagrams[i]
            t0 = perf()
            receive(data, addr)
            latencies.append(perf() - t0)
            if every and i % every == 0 and i >= every:
                receive(*datagrams[i - every // 2])  # a retransmission of an earlier request
        if end < n:
            reactor.callLater(0, step, end)
        else:
            finish()

    def begin() -> None:
        result["cpu0"] = time.process_time()
        result["wall0"] = time.perf_counter()
        gc.callbacks.append(timer)
        if profiler is not None:
            profiler.enable()
        step(0)

    def finish() -> None:
        if profiler is not None:
            profiler.disable()
        result["cpu"] = time.process_time() - result.pop("cpu0")
        result["wall"] = time.perf_counter() - result.pop("wall0")
        gc.callbacks.remove(timer)
        reactor.stop()

    reactor.callWhenRunning(begin)
    reactor.run()
    if profiler is not None:
        profiler.dump_stats(profile)
    live = len(layer.server)
    objects = len(gc.get_objects())
    rss = rssKiB()
    if sinkSocket is not None:
        sinkSocket.close()
    return {
        "requests": n,
        "retransmissions_sent": (n - 1) // every if every else 0,
        "responses_written": udp.writes,
        "cpu_us_per_request": round(result["cpu"] / n * 1e6, 2),
        "wall_s": round(result["wall"], 3),
        "latency_us": {
            "p50": round(percentile(latencies, 0.5) * 1e6, 1),
            "p99": round(percentile(latencies, 0.99) * 1e6, 1),
            "p999": round(percentile(latencies, 0.999) * 1e6, 1),
            "max": round(max(latencies) * 1e6, 1),
        },
        "gc": timer.summary(),
        "gc_threshold": gc.get_threshold(),
        "live_server_transactions": live,
        "timer_heap": len(reactor.getDelayedCalls()),
        "gc_objects_tracked": objects - objectsBefore,
        "gc_objects_per_transaction": round((objects - objectsBefore) / max(1, live), 1),
        "rss_growth_kib": rss - rssBefore,
        "rss_per_transaction_b": round((rss - rssBefore) * 1024 / max(1, live)),
        "rss_kib": rss,
        "counters": {k: v for k, v in counters.snapshot().items() if k.startswith(("in.", "out.", "transactions.retr", "parse"))},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CPU, GC and memory of the OPTIONS path in one process")
    parser.add_argument("-n", type=int, default=50_000, help="requests (distinct transactions)")
    parser.add_argument("--batch", type=int, default=50, help="requests per reactor turn")
    parser.add_argument("--retransmit", type=float, default=0.0, help="fraction of requests retransmitted once")
    parser.add_argument("--sink", action="store_true", help="send responses to a UDP socket on loopback")
    parser.add_argument("--no-gc-tuning", action="store_true", help="keep CPython's default GC thresholds")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the run")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    options = parser.parse_args(argv)
    figures = run(options.n, options.batch, options.retransmit, options.sink, not options.no_gc_tuning, options.profile)
    print(json.dumps(figures, indent=2))
    if options.json:
        with open(options.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
