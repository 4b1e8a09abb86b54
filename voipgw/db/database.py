# -*- test-case-name: tests.test_db -*-
"""
One database, used from a private thread pool.

Modelled on Synapse's C{runInteraction}: every query runs as C{func(conn)}
inside a transaction on a pool thread, operational errors are retried with
exponential backoff scheduled on the injected clock (never by sleeping on
the reactor), and every interaction carries a description for logs.
SQLAlchemy objects never leave the pool thread: C{func} returns plain data.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool
from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from voipgw.db.errors import DatabaseUnavailable

T = TypeVar("T")


def redactURL(url: str) -> str:
    """The URL with any password hidden, for logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid database URL>"


def useSQLitePragmas(engine: Engine) -> None:
    """Every new SQLite connection of C{engine} uses WAL (readers never block the writer)."""

    @event.listens_for(engine, "connect")
    def _sqlitePragmas(dbapiConnection: Any, record: Any) -> None:
        cursor = dbapiConnection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _isOperational(error: BaseException) -> bool:
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class Database:
    """
    A SQLAlchemy engine reached only through L{runInteraction}.

    @param url: a SQLAlchemy URL (C{sqlite:///path}, C{mysql+mysqldb://...}).
    @param reactor: provides C{IReactorThreads}-free C{callFromThread} and
        C{IReactorTime}; the thread pool is owned by this object.
    @param clock: schedules retries (defaults to C{reactor}).
    """

    log = Logger()

    def __init__(
        self,
        url: str,
        reactor: Any,
        clock: Any = None,
        name: str = "",
        minThreads: int = 1,
        maxThreads: int = 4,
        retries: int = 2,
        backoff: float = 0.05,
        connectTimeout: float = 3.0,
        engineOptions: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.name = name or redactURL(url)
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self._retries = retries
        self._backoff = backoff
        self._connectTimeout = connectTimeout
        self._engineOptions = dict(engineOptions or {})
        self._pool = ThreadPool(minthreads=minThreads, maxthreads=maxThreads, name=f"db:{self.name}")
        self._engine: Engine | None = None
        self.queries = 0
        self.errors = 0

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    def _makeEngine(self) -> Engine:
        url = make_url(self.url)
        options: dict[str, Any] = {"future": True}
        backend = url.get_backend_name()
        if backend == "sqlite":
            options["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if url.database in (None, "", ":memory:"):
                options["poolclass"] = StaticPool
        elif backend == "mysql":
            options["connect_args"] = {
                "connect_timeout": max(1, int(self._connectTimeout)),
                "read_timeout": max(1, int(self._connectTimeout * 3)),
                "write_timeout": max(1, int(self._connectTimeout * 3)),
                "charset": "utf8mb4",
            }
            options["pool_pre_ping"] = True
            options["pool_recycle"] = 3600
        options.update(self._engineOptions)
        engine = create_engine(url, **options)
        if backend == "sqlite":
            useSQLitePragmas(engine)
        return engine

    @property
    def engine(self) -> Engine:
        """The engine; for use on pool threads and in synchronous tools only."""
        if self._engine is None:
            self._engine = self._makeEngine()
        return self._engine

    def start(self) -> None:
        """Start the thread pool (idempotent)."""
        if not self._pool.started:
            self._pool.start()

    def stop(self) -> None:
        """Stop the thread pool and dispose of the engine's connections."""
        if self._pool.started:
            self._pool.stop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _runInTransaction(self, func: Callable[..., T], args: tuple, kw: dict) -> T:
        with self.engine.begin() as conn:
            return func(conn, *args, **kw)

    def runInteraction(
        self, desc: str, func: Callable[..., T], *args: Any, **kw: Any
    ) -> "defer.Deferred[T]":
        """
        Run C{func(conn, *args, **kw)} in a transaction on a pool thread.

        Operational errors (lost connection, server gone, lock wait timeout)
        are retried C{retries} times with backoff; the Deferred then fails
        with L{DatabaseUnavailable}.  Other errors propagate unchanged.
        """
        self.start()
        return defer.ensureDeferred(self._run(desc, func, args, kw))

    async def _run(self, desc: str, func: Callable[..., T], args: tuple, kw: dict) -> T:
        attempt = 0
        while True:
            self.queries += 1
            try:
                return await deferToThreadPool(
                    self._reactor, self._pool, self._runInTransaction, func, args, kw
                )
            except Exception as error:
                if not _isOperational(error):
                    raise
                self.errors += 1
                if attempt >= self._retries:
                    self.log.warn(
                        "database {db} unavailable for {desc} after {attempts} attempts: {error}",
                        db=self.name,
                        desc=desc,
                        attempts=attempt + 1,
                        error=str(getattr(error, "orig", error)),
                    )
                    raise DatabaseUnavailable(self.name, desc) from error
                delay = self._backoff * (2**attempt)
                attempt += 1
                self.log.debug(
                    "retrying {desc} on {db} in {delay}s", desc=desc, db=self.name, delay=delay
                )
                await task.deferLater(self._clock, delay, lambda: None)
