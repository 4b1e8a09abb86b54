#!/usr/bin/env python3
"""
Overload and recovery of a voipgw node, with the harness of bench/run.py.

    flock /tmp/voipgw-bench.lock python3 bench/overload.py                  # 6,000 then 3,000 REGISTER/s
    flock /tmp/voipgw-bench.lock python3 bench/overload.py --over 6000 --after 3000 --scenario register

Starts a 2-worker node (the pip-built, mypyc-compiled copy, as bench/run.py
does), drives it above its clean maximum for one rung, rests, then drives
it below for two rungs.  Prints per rung what completed, what was answered
503, the retransmissions and the response times, and how many overload
episodes the workers logged: above the maximum the node should answer 503
to part of the new requests rather than let retransmissions pile up, and
the rungs after it should be clean again (docs/performance.md, "Overload").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (bench/run.py)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="register", choices=["register", "options"])
    parser.add_argument("--over", type=int, default=6000, help="rate above the clean maximum")
    parser.add_argument("--after", type=int, default=3000, help="rate below it, for the two rungs after")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rest", type=float, default=5.0, help="seconds between the rungs")
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args(argv)
    run.SIPP_TRANSPORT = "un"
    run.ensurePackages()
    work = tempfile.mkdtemp(prefix="voipgw-overload-")
    sippUsers, importFile, _users = run.writeUsers(work, run.SUBSCRIBERS)
    server = run.VoipgwServer(work, importFile, options.workers)
    server.start()
    try:
        keys = {"domain": run.DOMAIN}
        inf = None
        if options.scenario == "register":
            keys["-auth_uri"] = run.DOMAIN
            inf = sippUsers
        for label, rate in (("over", options.over), ("after", options.after), ("after", options.after)):
            result = run.runSipp(options.scenario, server, rate, options.seconds, work, dict(keys), inf)
            rtt = result["rtt"].get("rtd1", {})
            print(f"{label:5} {rate:6}/s -> completed {result['achieved_rate']:8.1f}/s ok={result['successful']} "
                  f"failed={result['failed']} retrans={result['retransmissions']} p50={rtt.get('p50_ms')}ms "
                  f"p99={rtt.get('p99_ms')}ms cpu={result['server_cpu_s']}s {'clean' if result['clean'] else 'NOT CLEAN'}",
                  flush=True)
            time.sleep(options.rest)
    finally:
        server.stop()
    log = os.path.join(work, "voipgw", "pool.log")
    with open(log, encoding="utf-8", errors="replace") as f:
        text = f.read()
    print(f"overload episodes: {text.count('overloaded (')}, stale requests dropped (logged): "
          f"{text.count('dropped a request')}; worker log {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
