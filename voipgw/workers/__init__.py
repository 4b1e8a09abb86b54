"""
Several worker processes per node, one per core, sharing the SIP
listeners (SO_REUSEPORT) with per-worker private listeners for the
responses to the requests each one sends, and the location table
replicated between them.  See docs/workers.md.
"""

from voipgw.workers.pool import WorkerPool, defaultWorkerCount, runWorkers, workerSettings

__all__ = ["WorkerPool", "defaultWorkerCount", "runWorkers", "workerSettings"]
