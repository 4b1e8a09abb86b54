"""
Shared MariaDB fixtures for the location tests (no tests here).

A few private C{mariadbd}s are started once per test process, in parallel
threads (the data directory is initialised once and copied, which is both
faster than running C{mariadb-install-db} for each and avoids its temporary
table clashes when run concurrently), and destroyed at exit.  Every test
gets fresh databases on them, so tests do not see each other's rows; a test
that kills a server restarts it in its cleanup.
"""

from __future__ import annotations

import atexit
import shutil
import threading
import uuid
from typing import Optional

from tests import mariadb
from tests.mariadb import MariaDBServer

_lock = threading.Lock()
_servers: list[MariaDBServer] = []
_failure: Optional[str] = None


def skipReason() -> Optional[str]:
    return mariadb.mariadbAvailable()


def servers(n: int = 6) -> list[MariaDBServer]:
    """C{n} running private servers (started on first use)."""
    global _failure
    with _lock:
        if _failure is not None:
            raise RuntimeError(_failure)
        if len(_servers) < n:
            new = [MariaDBServer() for _ in range(n - len(_servers))]
            template = new[0]
            template._initialise()
            for s in new[1:]:
                shutil.rmtree(s.datadir, ignore_errors=True)
                shutil.copytree(template.datadir, s.datadir)
                s._initialised = True
            errors: list[BaseException] = []

            def start(s: MariaDBServer) -> None:
                try:
                    s.start()
                except BaseException as e:  # reported below
                    errors.append(e)

            threads = [threading.Thread(target=start, args=(s,)) for s in new]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            _servers.extend(new)
            if errors:
                _failure = f"could not start mariadbd: {errors[0]}"
                raise RuntimeError(_failure)
        for s in _servers[:n]:
            ensureRunning(s)
        return _servers[:n]


def ensureRunning(s: MariaDBServer) -> None:
    if s.process is not None and s.process.poll() is None:
        s.resume()
    else:
        s.start()


def _destroy() -> None:
    for s in _servers:
        s.destroy()


atexit.register(_destroy)


def newDatabase(server: MariaDBServer, prefix: str = "loc") -> str:
    """Create a uniquely named database on C{server}; return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    server.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return f"mysql+mysqldb://root@127.0.0.1:{server.port}/{name}"


def dropDatabase(url: str, server: MariaDBServer) -> None:
    name = url.rsplit("/", 1)[1]
    try:
        server.execute(f"DROP DATABASE IF EXISTS `{name}`")
    except Exception:
        pass


def rows(server: MariaDBServer, url: str) -> set[tuple]:
    """The (aor, binding_key, expires) of every row in a copy, read directly."""
    name = url.rsplit("/", 1)[1]
    return set(server.execute(
        "SELECT aor, binding_key, expires FROM location_binding", database=name))
