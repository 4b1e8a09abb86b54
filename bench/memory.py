#!/usr/bin/env python3
"""
Resident memory of 1,000,000 registered contacts in a worker's location
store (the in-memory store behind the replicated store of voipgw.workers).

    python3 bench/memory.py [--contacts N] [--json FILE]

Two measurements, each in a fresh child process so they do not share heap:

  - local:   bindings saved through ReplicatedLocationStore.save (what the
             worker that handled the REGISTER holds);
  - replica: the same bindings arriving as marshal-encoded "bulk"
             replication messages and applied (what every other worker
             holds: its strings are its own copies).

Each reports the process's VmRSS before and after, the bytes per contact,
and whether the whole process stays within 1 GiB.
"""

from __future__ import annotations

import argparse
import json
import marshal
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

GIB = 1 << 30


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child(mode: str, n: int) -> dict[str, float]:
    import gc

    from twisted.internet import task

    from voipgw.location.memory import MemoryLocationStore
    from voipgw.location.testing import makeBinding
    from voipgw.workers.replication import BULK_CHUNK, ReplicatedLocationStore, bindingToTuple

    clock = task.Clock()
    clock.advance(1_700_000_000)
    store = ReplicatedLocationStore(MemoryLocationStore(clock), clock)
    store.start()
    gc.collect()
    before = rss()
    now = clock.seconds()
    started = time.perf_counter()
    if mode == "local":
        for i in range(n):
            store.save(makeBinding(f"+4420{i:08d}@ims.example.net", i, now + 600 + (i % 3000)))
    else:
        for start in range(0, n, BULK_CHUNK):
            chunk = [bindingToTuple(makeBinding(f"+4420{i:08d}@ims.example.net", i, now + 600 + (i % 3000)))
                     for i in range(start, min(n, start + BULK_CHUNK))]
            store.receive(marshal.loads(marshal.dumps(("bulk", chunk))))
    elapsed = time.perf_counter() - started
    gc.collect()
    after = rss()
    count = store.inner.stats()["bindings"]
    assert count == n, (count, n)
    return {"mode": mode, "contacts": n, "rss_before_mib": before / 2**20, "rss_after_mib": after / 2**20,
            "bytes_per_contact": (after - before) / n, "seconds": elapsed, "within_1GiB": after <= GIB}


def main() -> int:
    parser = argparse.ArgumentParser(description="location store memory for N contacts")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--json", help="write the results as JSON")
    parser.add_argument("--child", choices=["local", "replica"], help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(child(options.child, options.contacts)))
        return 0
    results = []
    for mode in ("local", "replica"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--contacts", str(options.contacts)],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"{mode:8} {result['contacts']:,} contacts: RSS {result['rss_before_mib']:.0f} -> "
              f"{result['rss_after_mib']:.0f} MiB ({result['bytes_per_contact']:.0f} B/contact, "
              f"{result['seconds']:.1f} s); within 1 GiB: {result['within_1GiB']}")
    if options.json:
        with open(options.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if all(r["within_1GiB"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
