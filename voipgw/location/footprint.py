"""
Measure the memory store's resident size for many bindings::

    python -m voipgw.location.footprint 1000000

Builds C{N} distinct, realistic bindings (one per AOR, every string field
unique as real registrations are), saves them into a L{MemoryLocationStore}
and prints the process's resident set size before and after.
"""

from __future__ import annotations

import resource
import sys
import time

from twisted.internet import task

from voipgw.location.memory import MemoryLocationStore
from voipgw.location.testing import makeBinding


def residentMiB() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(n: int) -> dict[str, float]:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    store = MemoryLocationStore(clock)
    store.start()
    before = residentMiB()
    started = time.perf_counter()
    now = clock.seconds()
    for i in range(n):
        store.save(makeBinding(f"+4420{i:08d}@ims.example.net", i, now + 600 + (i % 3000)))
    elapsed = time.perf_counter() - started
    after = residentMiB()
    return {"bindings": float(store.stats()["bindings"]), "rssBeforeMiB": before,
            "rssAfterMiB": after, "perBindingBytes": (after - before) * 1048576 / max(1, n),
            "saveSeconds": elapsed}


if __name__ == "__main__":
    result = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
    for k, v in result.items():
        print(f"{k}: {v:.1f}")
