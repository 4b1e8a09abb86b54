#!/usr/bin/env python3
"""
CPU cost of a call through the record-routing stateful proxy, in process.

    python3 bench/proxy_path.py                 # 10,000 calls, µs per call / per message
    python3 bench/proxy_path.py --calls 2000 --profile 25   # + cProfile, top 25 functions
    python3 bench/proxy_path.py --profile-out /tmp/p.prof    # cProfile stats file

Each call is the sipp ladder's call (bench/scenarios/call.xml and uas.xml)
driven through a real L{RoutingService} + L{TransactionLayer} over
L{voipgw.testing.routing.RoutingHarness}'s fake transport: the caller (a
trusted network, so no digest) sends INVITE; the proxy answers 100 and
forwards the INVITE to the callee found in the L{MemoryLocationStore}; the
callee answers 180 and 200 (echoing Record-Route); the caller sends ACK and
BYE along the route set; the callee answers the BYE 200.  That is 6
messages into the proxy and 7 out of it (100, INVITE, 180, 200, ACK, BYE,
200) per call.

Only the proxy's work is timed: parsing the received bytes, the transaction
layer, the routing service, serialising what it sends (the fake transport
calls C{toBytes}, as a real one does) and the timers that fire.  Building
the peers' messages is not timed.  The clock is a heap of DelayedCalls like
the reactor's (C{task.Clock} sorts its list on every callLater), advanced
1/500 s per call; at the end it runs 70 s so every transaction ends, and the
live-object counts show what a finished call leaves behind.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import heapq
import io
import os
import pstats
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from twisted.internet.base import DelayedCall  # noqa: E402

from voipgw.routing.config import RoutingConfig  # noqa: E402
from voipgw.testing.routing import RoutingHarness  # noqa: E402
from voipgw.transport.address import Address  # noqa: E402

DOMAIN = "bench.example"
CALLER = Address("udp", "127.0.0.1", 5070)
CALLEE = Address("udp", "127.0.0.2", 5080)
PROXY = Address("udp", "127.0.0.1", 5060)
SDP = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"
    "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class HeapClock:
    """C{IReactorTime} on a heap with lazy cancellation (what the reactor does)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.heap: list[tuple[float, int, DelayedCall]] = []
        self._seq = 0

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kw: Any) -> DelayedCall:
        call = DelayedCall(self.now + delay, f, args, kw, self._cancelled, self._reset, self.seconds)
        self._push(call)
        return call

    def _push(self, call: DelayedCall) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (call.time, self._seq, call))

    def _cancelled(self, call: DelayedCall) -> None:
        pass

    def _reset(self, call: DelayedCall) -> None:
        self._push(call)

    def getDelayedCalls(self) -> list[DelayedCall]:
        return [c for _, _, c in self.heap if not c.cancelled and not c.called]

    def advance(self, amount: float) -> None:
        self.now += amount
        heap = self.heap
        while heap and heap[0][0] <= self.now:
            when, _, call = heapq.heappop(heap)
            if call.cancelled or call.called or call.time != when:
                continue
            if call.delayed_time > 0.0:
                # moved later by reset(): requeue at the new time, as the reactor does
                call.activate_delay()
                self._push(call)
                continue
            call.called = 1
            call.func(*call.args, **call.kw)


def _lines(message: Any, *names: str) -> list[str]:
    return [f"{n}: {v}" for n, v in message.headers if n in names]


class CallDriver:
    def __init__(self) -> None:
        self.clock = HeapClock()
        section = {"trusted": "127.0.0.0/8"}
        self.harness = RoutingHarness(
            section=RoutingConfig.fromSection(section), domains=[DOMAIN], clock=self.clock,  # type: ignore[arg-type]
            listen=[PROXY], authenticator=_Untouched(),
        )
        self.harness.register(f"callee@{DOMAIN}", f"sip:callee@{CALLEE.host}:{CALLEE.port}",
                              received=f"sip:{CALLEE.host}:{CALLEE.port}", expires=10**7)
        self.transports = self.harness.transports
        self.elapsed = 0.0
        self.messagesIn = 0
        self.messagesOut = 0
        self.problems: list[str] = []
        self.serial = 0

    def _deliver(self, data: str, source: Address) -> list[Any]:
        raw = data.encode()
        sent = self.transports.sent
        sent.clear()
        t0 = time.process_time()
        self.transports.receive(raw, source)
        self.elapsed += time.process_time() - t0
        self.messagesIn += 1
        self.messagesOut += len(sent)
        out = list(sent)
        sent.clear()
        return out

    def tick(self, seconds: float) -> None:
        sent = self.transports.sent
        t0 = time.process_time()
        self.clock.advance(seconds)
        self.elapsed += time.process_time() - t0
        self.messagesOut += len(sent)
        sent.clear()

    def call(self, n: int) -> None:
        callId = f"{n}-4242@127.0.0.1"
        fromTag = f"4242T{n}"
        toTag = f"4242U{n}"
        sdp = SDP
        invite = (
            f"INVITE sip:callee@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {CALLER.host}:{CALLER.port};branch=z9hG4bK-4242-{n}-0;rport\r\n"
            f"From: <sip:caller@{DOMAIN}>;tag={fromTag}\r\n"
            f"To: <sip:callee@{DOMAIN}>\r\n"
            f"Call-ID: {callId}\r\n"
            f"CSeq: 1 INVITE\r\n"
            f"Contact: <sip:caller@{CALLER.host}:{CALLER.port}>\r\n"
            f"Max-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
        )
        out = self._deliver(invite, CALLER)
        forwarded = [s for s in out if not s.isResponse]
        if len(forwarded) != 1 or [s.message.code for s in out if s.isResponse] != [100]:
            self.problems.append(f"call {n}: INVITE gave {[str(s.message) for s in out]}")
            return
        fwd = forwarded[0].message
        head = _lines(fwd, "Via", "From")
        toLine = f"To: <sip:callee@{DOMAIN}>;tag={toTag}"
        rr = _lines(fwd, "Record-Route")
        common = "\r\n".join(head + [toLine, f"Call-ID: {callId}", "CSeq: 1 INVITE"] + rr)
        contact = f"Contact: <sip:callee@{CALLEE.host}:{CALLEE.port}>"
        ringing = f"SIP/2.0 180 Ringing\r\n{common}\r\n{contact}\r\nContent-Length: 0\r\n\r\n"
        out = self._deliver(ringing, CALLEE)
        if [s.message.code for s in out] != [180]:
            self.problems.append(f"call {n}: 180 gave {[str(s.message) for s in out]}")
        ok = (f"SIP/2.0 200 OK\r\n{common}\r\n{contact}\r\nContent-Type: application/sdp\r\n"
              f"Content-Length: {len(sdp)}\r\n\r\n{sdp}")
        out = self._deliver(ok, CALLEE)
        if [s.message.code for s in out] != [200] or out[0].destination != CALLER:
            self.problems.append(f"call {n}: 200 gave {[str(s.message) for s in out]}")
            return
        routes = [line.replace("Record-Route:", "Route:", 1) for line in _lines(out[0].message, "Record-Route")]
        target = f"sip:callee@{CALLEE.host}:{CALLEE.port}"
        inDialog = "\r\n".join(routes + [
            f"From: <sip:caller@{DOMAIN}>;tag={fromTag}", toLine, f"Call-ID: {callId}",
        ])
        ack = (f"ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER.host}:{CALLER.port};branch=z9hG4bK-4242-{n}-1;rport\r\n"
               f"{inDialog}\r\nCSeq: 1 ACK\r\nContact: <sip:caller@{CALLER.host}:{CALLER.port}>\r\n"
               f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        out = self._deliver(ack, CALLER)
        if len(out) != 1 or out[0].message.method != "ACK" or out[0].destination != CALLEE:
            self.problems.append(f"call {n}: ACK gave {[str(s.message) for s in out]}")
        bye = (f"BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER.host}:{CALLER.port};branch=z9hG4bK-4242-{n}-2;rport\r\n"
               f"{inDialog}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        out = self._deliver(bye, CALLER)
        if len(out) != 1 or out[0].message.method != "BYE" or out[0].destination != CALLEE:
            self.problems.append(f"call {n}: BYE gave {[str(s.message) for s in out]}")
            return
        fbye = out[0].message
        byeOk = ("SIP/2.0 200 OK\r\n" + "\r\n".join(_lines(fbye, "Via", "From", "To", "Call-ID", "CSeq"))
                 + f"\r\n{contact}\r\nContent-Length: 0\r\n\r\n")
        out = self._deliver(byeOk, CALLEE)
        if [s.message.code for s in out] != [200] or out[0].destination != CALLER:
            self.problems.append(f"call {n}: BYE 200 gave {[str(s.message) for s in out]}")

    def run(self, calls: int, rate: float) -> None:
        step = 1.0 / rate
        for _ in range(calls):
            self.serial += 1
            self.call(self.serial)
            self.tick(step)


class _Untouched:
    """An authenticator that must never be asked (the caller is trusted)."""

    def authenticate(self, *args: Any, **kw: Any) -> Any:
        raise AssertionError("a trusted caller was challenged")


def liveState(driver: CallDriver) -> dict[str, int]:
    service = driver.harness.service
    layer = driver.harness.transactions
    return {
        "contexts": len(service.contexts),
        "byRequest": len(service._byRequest),
        "server_tx": len(layer.server),
        "client_tx": len(layer.client),
        "timers": len(driver.clock.getDelayedCalls()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--rate", type=float, default=500.0, help="simulated calls/s (clock step per call)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile the run, print the top N")
    parser.add_argument("--profile-out", default=None, help="write cProfile stats here")
    parser.add_argument("--worker-gc", action="store_true",
                        help="collect as a worker does (gc.freeze, voipgw.workers.child.GC_THRESHOLDS); "
                             "with --warmup 20000 the run is in steady state (timers L, M, J: 32 s)")
    args = parser.parse_args()

    driver = CallDriver()
    if args.worker_gc:
        from voipgw.workers.child import GC_THRESHOLDS

        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    driver.run(args.warmup, args.rate)
    if driver.problems:
        print("warm-up calls failed:", driver.problems[:5])
        return 1
    driver.elapsed = 0.0
    driver.messagesIn = driver.messagesOut = 0
    gc.collect()
    profiler = cProfile.Profile() if (args.profile or args.profile_out) else None
    cpu0 = time.process_time()
    if profiler is not None:
        profiler.enable()
    driver.run(args.calls, args.rate)
    inCalls = driver.elapsed
    driver.tick(70.0)
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - cpu0
    total = driver.elapsed
    live = liveState(driver)
    calls = args.calls
    messages = driver.messagesIn + driver.messagesOut
    print(f"calls: {calls}  messages in/out: {driver.messagesIn}/{driver.messagesOut}  problems: {len(driver.problems)}")
    for problem in driver.problems[:5]:
        print("  ", problem)
    print(f"proxy CPU: {total * 1e6 / calls:.0f} µs/call, {total * 1e6 / messages:.1f} µs/message event "
          f"({inCalls * 1e6 / calls:.0f} µs/call in the calls, {(total - inCalls) * 1e6 / calls:.0f} µs/call in end timers)")
    print(f"process CPU incl. the simulated peers: {cpu * 1e6 / calls:.0f} µs/call")
    print(f"=> {1 / (total / calls):.0f} calls/s on one core for the proxy alone")
    print("left after every transaction ended:", live)
    if profiler is not None:
        if args.profile_out:
            profiler.dump_stats(args.profile_out)
        if args.profile:
            stream = io.StringIO()
            stats = pstats.Stats(profiler, stream=stream)
            stats.sort_stats("tottime").print_stats(args.profile)
            print(stream.getvalue())
    return 1 if driver.problems else 0


if __name__ == "__main__":
    sys.exit(main())
