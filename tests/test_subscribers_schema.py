"""The MySQL DDL in sql/subscribers/ and the SQLAlchemy tables agree."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, inspect
from twisted.trial.unittest import SkipTest, TestCase

from tests import mariadb
from voipgw.subscribers.schema import MIGRATOR, subscriberTable


def describe(url: str) -> tuple[dict, set, set]:
    engine = create_engine(url)
    with engine.begin() as conn:
        MIGRATOR.initialise(conn)
    inspector = inspect(engine)
    columns = {c["name"]: c["nullable"] for c in inspector.get_columns("subscriber")}
    unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("subscriber")}
    unique |= {tuple(i["column_names"]) for i in inspector.get_indexes("subscriber") if i.get("unique")}
    indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("subscriber") if not i.get("unique")}
    engine.dispose()
    return columns, unique, indexes


class SchemaAgreementTests(TestCase):
    def test_mysqlScriptMatchesTables(self) -> None:
        reason = mariadb.sharedServerReason()
        if reason:
            raise SkipTest(reason)
        url, name = mariadb.createScratchDatabase()
        self.addCleanup(mariadb.dropDatabase, name)
        mysql = describe(url)
        sqlite = describe(f"sqlite:///{os.path.abspath(self.mktemp())}.sqlite")
        self.assertEqual(mysql, sqlite)
        self.assertEqual(set(mysql[0]), {c.name for c in subscriberTable.columns})
        self.assertIn(("username", "domain"), mysql[1])
        self.assertIn(("domain", "username"), mysql[2])
        self.assertFalse(any(mysql[0].values()), "a nullable column")
