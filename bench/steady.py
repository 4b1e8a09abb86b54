#!/usr/bin/env python3
"""
Server CPU per exchange at a fixed rate: the quick, honest A/B for a change.

    python3 bench/steady.py                              # REGISTER at 6,000/s, 3 x 12 s
    python3 bench/steady.py --scenario call --rate 2500
    python3 bench/steady.py --profile py-spy             # + a py-spy profile of each worker (last rung)
    python3 bench/steady.py --profile perf               # + perf samples of each worker (last rung)

Builds voipgw as bench/run.py does (pip install --target, mypyc), starts a
node with --workers N, drives it with the same sipp scenario at one rate
C{--repeat} times and prints, per rung, the workers' CPU seconds (user +
system, from /proc) divided by the exchanges sipp completed.  The first
rung of REGISTER creates the 50,000 bindings; the later ones refresh them,
which is what a registrar does most of the time, so compare the later
rungs.  Compare before and after on the same machine, never across
machines, and mind the spread: on one 2-core VM the same build read
205-250 us per exchange within an hour (sipp's own CPU moved as much),
so a change smaller than that is better measured with callgrind on
bench/register_path.py (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402


def profileCommand(kind: str, pid: int, seconds: float, out: str) -> list[str]:
    if kind == "py-spy":
        return ["py-spy", "record", "--nonblocking", "--rate", "250", "--duration", str(int(seconds)),
                "--format", "raw", "--output", out, "--pid", str(pid)]
    return ["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", out, "-p", str(pid), "--",
            "sleep", str(seconds)]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="server CPU per exchange at a fixed rate (voipgw)")
    parser.add_argument("--scenario", default="register", choices=["register", "options", "call"])
    parser.add_argument("--rate", type=int, default=6000)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pure-python", action="store_true")
    parser.add_argument("--build", default=None,
                        help="keep the mypyc build in this directory and reuse it when it exists (A/B of the same code)")
    parser.add_argument("--profile", choices=["py-spy", "perf"], default=None,
                        help="profile each worker during the last rung (files in the work directory)")
    options = parser.parse_args(argv)

    run.ensurePackages()
    work = tempfile.mkdtemp(prefix="voipgw-steady-")
    sippUsers, importFile, _users = run.writeUsers(work, run.SUBSCRIBERS)
    if options.build and not options.pure_python:
        build = os.path.abspath(options.build)
        if not os.path.isdir(build):
            built, _kind = run.buildVoipgw(work, False)
            assert built is not None
            shutil.move(built, build)
        run.buildVoipgw = lambda _work, _pure: (build, "mypyc")  # type: ignore[assignment]
    server = run.VoipgwServer(work, importFile, options.workers, options.pure_python)
    server.start()
    uas: Optional[run.Uas] = None
    keys: dict[str, str] = {"domain": run.DOMAIN}
    inf = None
    if options.scenario == "register":
        inf = sippUsers
        keys["-auth_uri"] = run.DOMAIN
    elif options.scenario == "call":
        uas = run.Uas(work, "voipgw")
        uas.start()
        run.registerContact(server.port, run.CALLEE, run.CALLEE_PASSWORD, uas.port)
        keys["-s"] = run.CALLEE
    perExchange: list[float] = []
    try:
        for index in range(options.repeat):
            profilers: list[subprocess.Popen[Any]] = []
            if options.profile and index == options.repeat - 1:
                for pid in server.pids():
                    out = os.path.join(work, f"{options.profile}-{pid}.{'txt' if options.profile == 'py-spy' else 'data'}")
                    profilers.append(subprocess.Popen(profileCommand(options.profile, pid, options.seconds, out),
                                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            offset = server.logOffset()
            result = run.runSipp(options.scenario, server, options.rate, options.seconds, work, keys, inf, uas)
            for p in profilers:
                p.wait(timeout=60)
            done = max(1, result["successful"])
            micros = result["server_cpu_s"] / done * 1e6
            perExchange.append(micros)
            print(f"rung {index + 1}: {result['achieved_rate']:.0f}/s ok={result['successful']} "
                  f"failed={result['failed']} retrans={result['retransmissions']} "
                  f"server cpu={result['server_cpu_s']:.2f}s -> {micros:.1f} us/exchange "
                  f"sipp={result['sipp_cpu_s']}", flush=True)
            events = {k: v for k, v in server.logEvents(offset).items() if v}
            if events:
                print(f"      server log: {events}", flush=True)
            for kind, count in list(result.get("uac_errors", {}).items())[:4]:
                print(f"      uac {count:6} x {kind[:120]}", flush=True)
            time.sleep(2.0)
    finally:
        if uas:
            uas.stop()
        server.stop()
    later = perExchange[1:] or perExchange
    print(f"{options.scenario} at {options.rate}/s: {sum(later) / len(later):.1f} us/exchange "
          f"(mean of rungs 2..{len(perExchange)})" if len(perExchange) > 1 else "")
    if options.profile:
        print(f"profiles in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
