# -*- test-case-name: tests.test_migrations -*-
"""
Schema versions and ordered upgrade steps, per component.

Every component that owns tables (C{"subscribers"}, C{"location"}, ...)
builds one L{Migrator} from its ordered L{MigrationStep}s and exposes it as
C{MIGRATOR} in its C{voipgw.<component>.schema} module, so that
L{loadMigrator} (and C{voipgw-admin db init/upgrade --component NAME}) can
find it.  The versions of all components live in one table::

    schema_version(component VARCHAR(64) PRIMARY KEY, version INT NOT NULL)

Step N upgrades a component from version N-1 to N; version 0 means "absent".
L{Migrator.initialise} creates a component from nothing, L{Migrator.upgrade}
applies the steps above its recorded version, L{Migrator.check} refuses to
run against a schema older or newer than the code.

Every method takes a SQLAlchemy L{Connection} inside a transaction: call
them from C{Database.runInteraction} or, in synchronous tools, from
C{engine.begin()}.  On MySQL/MariaDB, DDL commits implicitly, so a step that
fails half way may leave part of its changes; the recorded version is only
advanced after a step has completed, and steps should be written to be
re-runnable (C{CREATE TABLE IF NOT EXISTS}, ...).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select
from sqlalchemy.engine import Connection
from twisted.logger import Logger

SCHEMA_METADATA = MetaData()

schemaVersionTable = Table(
    "schema_version",
    SCHEMA_METADATA,
    Column("component", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)


class SchemaError(Exception):
    """The schema is missing, outdated or newer than this code; one line for operators."""


@dataclass(frozen=True)
class MigrationStep:
    """
    One upgrade step: C{apply(conn)} takes the component from C{version - 1}
    to C{version}.
    """

    version: int
    description: str
    apply: Callable[[Connection], None]


def splitSQL(text: str) -> list[str]:
    """
    Split a DDL script into statements on C{;}, ignoring semicolons inside
    quotes, backticks and comments (C{-- ...}, C{# ...}, C{/* ... */}).
    Comments are dropped; empty statements are skipped.
    """
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if text[j] == "\\" and c != "`":
                    j += 2
                    continue
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            current.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("--", i) and (i + 2 >= n or text[i + 2] in " \t\r\n") or c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            current.append("\n")
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            current.append(" ")
        elif c == ";":
            statement = "".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
            i += 1
        else:
            current.append(c)
            i += 1
    statement = "".join(current).strip()
    if statement:
        statements.append(statement)
    return statements


def sqlDirectory(component: str) -> Path:
    """
    The directory of a component's MySQL DDL files: C{sql/<component>/} of
    the checkout, or the copy installed as C{voipgw.sqlfiles}.
    """
    checkout = Path(__file__).resolve().parent.parent.parent / "sql" / component
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parent.parent / "sqlfiles" / component


def createTablesStep(
    version: int,
    description: str,
    tables: Sequence[Table],
    mysqlScript: Path | None = None,
) -> MigrationStep:
    """
    A step creating C{tables}.

    On MySQL/MariaDB the reviewed DDL script C{mysqlScript} is executed
    statement by statement (it is the reference schema for DBAs); on every
    other dialect (SQLite) the SQLAlchemy L{Table} objects, which define the
    same tables, are created.
    """

    def apply(conn: Connection) -> None:
        if mysqlScript is not None and conn.dialect.name in ("mysql", "mariadb"):
            try:
                script = mysqlScript.read_text(encoding="utf-8")
            except OSError as e:
                raise SchemaError(f"cannot read schema file {mysqlScript}: {e.strerror}") from e
            for statement in splitSQL(script):
                conn.exec_driver_sql(statement)
        else:
            for table in tables:
                table.create(conn, checkfirst=True)

    return MigrationStep(version, description, apply)


def _hasVersionTable(conn: Connection) -> bool:
    return inspect(conn).has_table(schemaVersionTable.name)


def ensureVersionTable(conn: Connection) -> None:
    schemaVersionTable.create(conn, checkfirst=True)


def recordedVersions(conn: Connection) -> dict[str, int]:
    """Every component's recorded version (empty if the table is absent)."""
    if not _hasVersionTable(conn):
        return {}
    rows = conn.execute(select(schemaVersionTable.c.component, schemaVersionTable.c.version))
    return {component: version for component, version in rows}


class Migrator:
    """
    The ordered upgrade steps of one component.

    @param component: the name recorded in C{schema_version} (at most 64 chars).
    @param steps: steps with versions 1, 2, ... N in order.
    """

    log = Logger()

    def __init__(self, component: str, steps: Iterable[MigrationStep]) -> None:
        self.component = component
        self.steps = tuple(steps)
        if not component or len(component) > 64:
            raise ValueError("component name must be 1..64 characters")
        for expected, step in enumerate(self.steps, start=1):
            if step.version != expected:
                raise ValueError(
                    f"{component}: migration steps must be numbered 1..N in order; "
                    f"found version {step.version} at position {expected}"
                )

    @property
    def latestVersion(self) -> int:
        return len(self.steps)

    def currentVersion(self, conn: Connection) -> int:
        """The recorded version of this component; 0 if it was never created."""
        if not _hasVersionTable(conn):
            return 0
        version = conn.execute(
            select(schemaVersionTable.c.version).where(
                schemaVersionTable.c.component == self.component
            )
        ).scalar()
        return int(version) if version is not None else 0

    def _setVersion(self, conn: Connection, old: int, new: int) -> None:
        if old == 0:
            conn.execute(
                schemaVersionTable.insert().values(component=self.component, version=new)
            )
        else:
            conn.execute(
                schemaVersionTable.update()
                .where(schemaVersionTable.c.component == self.component)
                .values(version=new)
            )

    def _applyFrom(self, conn: Connection, current: int) -> list[MigrationStep]:
        applied = []
        for step in self.steps[current:]:
            self.log.info(
                "schema {component}: applying step {version} ({description})",
                component=self.component,
                version=step.version,
                description=step.description,
            )
            step.apply(conn)
            self._setVersion(conn, current, step.version)
            current = step.version
            applied.append(step)
        return applied

    def initialise(self, conn: Connection) -> list[MigrationStep]:
        """
        Create the component's schema from nothing; return the steps applied.

        A no-op on a schema already at the latest version.  Raises
        L{SchemaError} if the schema exists at an older version (use
        L{upgrade}) or at a newer one.
        """
        ensureVersionTable(conn)
        current = self.currentVersion(conn)
        if current == 0:
            return self._applyFrom(conn, 0)
        self._refuseNewer(current)
        if current < self.latestVersion:
            raise SchemaError(
                f"{self.component} schema exists at version {current} (latest is "
                f"{self.latestVersion}); run 'voipgw-admin db upgrade'"
            )
        return []

    def upgrade(self, conn: Connection) -> list[MigrationStep]:
        """
        Apply the steps above the recorded version; return the steps applied.
        Raises L{SchemaError} if the component was never created.
        """
        current = self.currentVersion(conn)
        if current == 0:
            raise SchemaError(
                f"{self.component} schema is not initialised; run 'voipgw-admin db init'"
            )
        self._refuseNewer(current)
        return self._applyFrom(conn, current)

    def check(self, conn: Connection) -> None:
        """Raise L{SchemaError} unless the schema is exactly at the latest version."""
        current = self.currentVersion(conn)
        if current == 0:
            raise SchemaError(
                f"{self.component} schema is not initialised; run 'voipgw-admin db init'"
            )
        self._refuseNewer(current)
        if current < self.latestVersion:
            raise SchemaError(
                f"{self.component} schema is at version {current}, this code needs "
                f"{self.latestVersion}; run 'voipgw-admin db upgrade'"
            )

    def _refuseNewer(self, current: int) -> None:
        if current > self.latestVersion:
            raise SchemaError(
                f"{self.component} schema is at version {current}, newer than this code "
                f"knows ({self.latestVersion}); upgrade voipgw"
            )


_COMPONENT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def loadMigrator(component: str) -> Migrator:
    """
    Find a component's migrator: C{"name"} means C{voipgw.name.schema.MIGRATOR};
    C{"package.module:attribute"} names any other (for custom applications).
    Raises L{SchemaError} if there is none.
    """
    if ":" in component:
        moduleName, _, attribute = component.partition(":")
    else:
        if not _COMPONENT_NAME.match(component):
            raise SchemaError(f"invalid component name {component!r}")
        moduleName, attribute = f"voipgw.{component}.schema", "MIGRATOR"
    try:
        module = importlib.import_module(moduleName)
    except ModuleNotFoundError as e:
        raise SchemaError(f"unknown schema component {component!r} (no module {e.name})") from e
    migrator = getattr(module, attribute, None)
    if not isinstance(migrator, Migrator):
        raise SchemaError(f"unknown schema component {component!r} ({moduleName}.{attribute} is not a Migrator)")
    return migrator
