"""Tests for L{voipgw.db.migrations}: versions, steps, DDL splitting."""

from __future__ import annotations

import os
import tempfile

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, inspect, text
from twisted.trial.unittest import SkipTest, TestCase

from tests import mariadb
from voipgw.db.migrations import (
    MigrationStep,
    Migrator,
    SchemaError,
    createTablesStep,
    loadMigrator,
    recordedVersions,
    splitSQL,
)


def _steps(log: list[int]) -> list[MigrationStep]:
    meta = MetaData()
    widgets = Table("widgets", meta, Column("id", Integer, primary_key=True), Column("name", String(20)))

    def addColour(conn) -> None:
        log.append(2)
        conn.execute(text("ALTER TABLE widgets ADD COLUMN colour VARCHAR(10)"))

    def createWidgets(conn) -> None:
        log.append(1)
        widgets.create(conn)

    return [MigrationStep(1, "widgets", createWidgets), MigrationStep(2, "colour", addColour)]


class SplitSQLTests(TestCase):
    def test_statements(self) -> None:
        script = """
        -- a comment; with a semicolon
        CREATE TABLE a (x VARCHAR(3) DEFAULT ';');  # another; comment
        /* block; comment */
        INSERT INTO a VALUES ('it''s;'), ("q\\";");
        CREATE TABLE `we;ird` (y INT)
        """
        self.assertEqual(
            splitSQL(script),
            [
                "CREATE TABLE a (x VARCHAR(3) DEFAULT ';')",
                "INSERT INTO a VALUES ('it''s;'), (\"q\\\";\")",
                "CREATE TABLE `we;ird` (y INT)",
            ],
        )

    def test_empty(self) -> None:
        self.assertEqual(splitSQL("  ;\n-- nothing\n;"), [])


class MigratorValidationTests(TestCase):
    def test_stepsNumbered(self) -> None:
        noop = lambda conn: None  # noqa: E731
        self.assertRaises(ValueError, Migrator, "x", [MigrationStep(2, "two", noop)])
        self.assertRaises(ValueError, Migrator, "", [])
        self.assertRaises(ValueError, Migrator, "x" * 65, [])

    def test_loadMigrator(self) -> None:
        self.assertEqual(loadMigrator("subscribers").component, "subscribers")
        self.assertRaises(SchemaError, loadMigrator, "nosuchcomponent")
        self.assertRaises(SchemaError, loadMigrator, "../etc")
        self.assertRaises(SchemaError, loadMigrator, "voipgw.db.migrations:SchemaError")


class MigratorTestsMixin:
    """Run against an engine from C{self.makeEngine()}."""

    def makeEngine(self):
        raise NotImplementedError

    def setUp(self) -> None:
        self.engine = self.makeEngine()
        self.addCleanup(self.engine.dispose)

    def columns(self, table: str) -> set[str]:
        return {c["name"] for c in inspect(self.engine).get_columns(table)}

    def test_initialiseFromNothing(self) -> None:
        log: list[int] = []
        migrator = Migrator("widgets", _steps(log))
        with self.engine.begin() as conn:
            self.assertEqual(migrator.currentVersion(conn), 0)
            applied = migrator.initialise(conn)
        self.assertEqual([s.version for s in applied], [1, 2])
        self.assertEqual(log, [1, 2])
        self.assertEqual(self.columns("widgets"), {"id", "name", "colour"})
        with self.engine.begin() as conn:
            self.assertEqual(migrator.currentVersion(conn), 2)
            migrator.check(conn)
            # Idempotent at the latest version.
            self.assertEqual(migrator.initialise(conn), [])
            self.assertEqual(recordedVersions(conn), {"widgets": 2})
        self.assertEqual(log, [1, 2])

    def test_upgrade(self) -> None:
        log: list[int] = []
        old = Migrator("widgets", _steps(log)[:1])
        new = Migrator("widgets", _steps(log))
        with self.engine.begin() as conn:
            old.initialise(conn)
        with self.engine.begin() as conn:
            error = self.assertRaises(SchemaError, new.check, conn)
            self.assertIn("db upgrade", str(error))
            error = self.assertRaises(SchemaError, new.initialise, conn)
            self.assertIn("db upgrade", str(error))
            applied = new.upgrade(conn)
        self.assertEqual([s.version for s in applied], [2])
        self.assertEqual(log, [1, 2])
        self.assertIn("colour", self.columns("widgets"))
        with self.engine.begin() as conn:
            self.assertEqual(new.upgrade(conn), [])
            new.check(conn)
            # The old code refuses the newer schema.
            error = self.assertRaises(SchemaError, old.check, conn)
            self.assertIn("newer", str(error))

    def test_upgradeRequiresInit(self) -> None:
        migrator = Migrator("widgets", _steps([]))
        with self.engine.begin() as conn:
            error = self.assertRaises(SchemaError, migrator.upgrade, conn)
            self.assertIn("db init", str(error))
            self.assertRaises(SchemaError, migrator.check, conn)

    def test_componentsIndependent(self) -> None:
        a = Migrator("a", [MigrationStep(1, "noop", lambda conn: None)])
        b = Migrator("b", [MigrationStep(1, "noop", lambda conn: None), MigrationStep(2, "noop", lambda conn: None)])
        with self.engine.begin() as conn:
            a.initialise(conn)
            b.initialise(conn)
            self.assertEqual(recordedVersions(conn), {"a": 1, "b": 2})

    def test_failedStepNotRecorded(self) -> None:
        def boom(conn) -> None:
            raise RuntimeError("boom")

        migrator = Migrator("widgets", [MigrationStep(1, "noop", lambda conn: None), MigrationStep(2, "boom", boom)])
        self.assertRaises(RuntimeError, self._initialise, migrator)
        with self.engine.begin() as conn:
            self.assertEqual(migrator.currentVersion(conn), 0)

    def _initialise(self, migrator: Migrator) -> None:
        with self.engine.begin() as conn:
            migrator.initialise(conn)

    def test_createTablesStepUsesScriptOnMySQL(self) -> None:
        meta = MetaData()
        table = Table("gizmos", meta, Column("id", Integer, primary_key=True))
        script = os.path.join(self.mktemp())
        with open(script, "w") as f:
            f.write("CREATE TABLE gizmos (id INT PRIMARY KEY, from_script INT);\n-- end\n")
        from pathlib import Path

        migrator = Migrator("gizmos", [createTablesStep(1, "gizmos", [table], Path(script))])
        with self.engine.begin() as conn:
            migrator.initialise(conn)
        expected = {"id", "from_script"} if self.engine.dialect.name == "mysql" else {"id"}
        self.assertEqual(self.columns("gizmos"), expected)


class SQLiteMigratorTests(MigratorTestsMixin, TestCase):
    def makeEngine(self):
        path = os.path.join(tempfile.mkdtemp(dir=os.getcwd()), "m.sqlite")
        return create_engine(f"sqlite:///{path}")


class MariaDBMigratorTests(MigratorTestsMixin, TestCase):
    def makeEngine(self):
        reason = mariadb.sharedServerReason()
        if reason:
            raise SkipTest(reason)
        url, name = mariadb.createScratchDatabase()
        self.addCleanup(mariadb.dropDatabase, name)
        return create_engine(url)
