"""
Run a node with its workers in the foreground, without twistd:

    python3 -m voipgw.workers --config voipgw.ini [--workers N] [--run-dir DIR]

(the benchmark harness uses this; C{twistd -n voipgw --workers N} does the
same once the tap calls L{voipgw.workers.runWorkers}).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m voipgw.workers", description="Run a voipgw node with N workers.")
    parser.add_argument("--config", required=True, help="INI configuration file")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: [node] workers, else one per core)")
    parser.add_argument("--run-dir", default=None, help="directory for worker sockets and logs")
    parser.add_argument("--log-level", default="warn", help="worker log level (default: warn)")
    options = parser.parse_args(argv)

    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import defer, reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from voipgw.config import parseConfig, readINI
    from voipgw.errors import ConfigError
    from voipgw.workers.pool import WorkerPool, workerSettings

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    try:
        config = parseConfig(readINI(options.config))
        count, base = workerSettings(config)
    except ConfigError as e:
        print(f"voipgw: configuration error: {e}", file=sys.stderr)
        return 2
    count = options.workers or count
    pool = WorkerPool(config, count, reactor, runDir=options.run_dir, privatePortBase=base, logLevel=options.log_level)
    status = []

    async def start() -> None:
        try:
            info = await pool.startService()
        except Exception as e:
            print(f"voipgw: workers failed to start: {e}", file=sys.stderr)
            status.append(1)
            reactor.stop()
            return
        print("READY " + " ".join(str(i["pid"]) for i in info), flush=True)

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()))
    reactor.addSystemEventTrigger("before", "shutdown", lambda: pool.stopService() if pool.running else None)
    reactor.run()
    return status[0] if status else 0


if __name__ == "__main__":
    sys.exit(main())
