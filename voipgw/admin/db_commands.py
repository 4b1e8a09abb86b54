# -*- test-case-name: tests.test_admin_subscribers -*-
"""
C{voipgw-admin db init|upgrade|status}: create and migrate schemas.

Also the helpers every database-backed command uses: L{databaseURL} (the
C{--db} option), L{openEngine} and L{connecting} (turning driver errors
into one-line L{AdminError}s).
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from voipgw.admin.cli import AdminError
from voipgw.db.database import redactURL, useSQLitePragmas
from voipgw.db.errors import describeError
from voipgw.db.migrations import SchemaError, loadMigrator, recordedVersions
from voipgw.subscribers.config import DEFAULT_URL, ConfigError, validateURL

ENV_DB = "VOIPGW_SUBSCRIBERS_DB"


def addDatabaseOption(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help=f"database URL (default: ${ENV_DB}, else {DEFAULT_URL} relative to the current directory)",
    )


def databaseURL(args: argparse.Namespace) -> str:
    url = args.db or os.environ.get(ENV_DB) or DEFAULT_URL
    try:
        return validateURL(url)
    except ConfigError as e:
        raise AdminError(str(e)) from None


def openEngine(url: str, create: bool = False) -> Engine:
    """
    An engine for C{url}.  For SQLite, a missing file is an error unless
    C{create} (then its directory is created too).
    """
    parsed = make_url(url)
    options: dict = {}
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:":
            if not os.path.exists(path):
                if not create:
                    raise AdminError(
                        f"database {path} does not exist; create it with 'voipgw-admin db init'"
                    )
                try:
                    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                except OSError as e:
                    raise AdminError(f"cannot create directory for {path}: {e.strerror}") from None
    else:
        options["connect_args"] = {"connect_timeout": 5, "charset": "utf8mb4"}
    try:
        engine = create_engine(parsed, **options)
    except Exception as e:  # a missing driver, a bad option in the URL
        raise AdminError(f"cannot use database URL {redactURL(url)}: {e}") from None
    if parsed.get_backend_name() == "sqlite":
        useSQLitePragmas(engine)
    return engine


@contextmanager
def connecting(engine: Engine) -> Iterator[Connection]:
    """C{engine.begin()}, with unreachable-database errors as L{AdminError}."""
    try:
        with engine.begin() as conn:
            yield conn
    except SchemaError as e:
        raise AdminError(str(e)) from None
    except IntegrityError:
        raise  # the caller knows what a constraint violation means
    except OperationalError as e:
        raise AdminError(
            f"database {redactURL(str(engine.url))} is unavailable: {describeError(e)}"
        ) from None
    except DBAPIError as e:
        raise AdminError(f"database error on {redactURL(str(engine.url))}: {describeError(e)}") from None


def _components(args: argparse.Namespace) -> list[str]:
    return args.component or ["subscribers"]


def cmdInit(args: argparse.Namespace) -> int:
    url = databaseURL(args)
    engine = openEngine(url, create=True)
    try:
        for name in _components(args):
            migrator = _load(name)
            with connecting(engine) as conn:
                applied = migrator.initialise(conn)
            if applied:
                print(f"{migrator.component}: created schema version {migrator.latestVersion} in {redactURL(url)}")
            else:
                print(f"{migrator.component}: schema already at version {migrator.latestVersion}")
    finally:
        engine.dispose()
    return 0


def cmdUpgrade(args: argparse.Namespace) -> int:
    url = databaseURL(args)
    engine = openEngine(url)
    try:
        for name in _components(args):
            migrator = _load(name)
            with connecting(engine) as conn:
                before = migrator.currentVersion(conn)
                applied = migrator.upgrade(conn)
            if applied:
                print(f"{migrator.component}: upgraded from version {before} to {migrator.latestVersion}")
            else:
                print(f"{migrator.component}: schema already at version {migrator.latestVersion}")
    finally:
        engine.dispose()
    return 0


def cmdStatus(args: argparse.Namespace) -> int:
    url = databaseURL(args)
    engine = openEngine(url)
    try:
        with connecting(engine) as conn:
            versions = recordedVersions(conn)
    finally:
        engine.dispose()
    if not versions:
        print(f"no schema in {redactURL(url)}; run 'voipgw-admin db init'")
        return 1
    outdated = False
    for component, version in sorted(versions.items()):
        try:
            latest: int | str = loadMigrator(component).latestVersion
        except SchemaError:
            latest = "?"
        note = ""
        if isinstance(latest, int) and version < latest:
            note, outdated = " (run 'voipgw-admin db upgrade')", True
        print(f"{component}: version {version}, latest {latest}{note}")
    return 2 if outdated else 0


def _load(name: str):  # type: ignore[no-untyped-def]
    try:
        return loadMigrator(name)
    except SchemaError as e:
        raise AdminError(str(e)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="create and upgrade database schemas")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def componentOption(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--component",
            action="append",
            metavar="NAME",
            help="schema component (repeatable; default: subscribers)",
        )

    init = commands.add_parser("init", help="create the schema (and an SQLite file) if absent")
    addDatabaseOption(init)
    componentOption(init)
    init.set_defaults(func=cmdInit)

    upgrade = commands.add_parser("upgrade", help="apply pending schema upgrades")
    addDatabaseOption(upgrade)
    componentOption(upgrade)
    upgrade.set_defaults(func=cmdUpgrade)

    status = commands.add_parser("status", help="show schema versions (exit 2 if an upgrade is pending)")
    addDatabaseOption(status)
    status.set_defaults(func=cmdStatus)
