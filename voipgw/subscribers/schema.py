# -*- test-case-name: tests.test_subscribers_schema -*-
"""
The subscriber tables and their upgrade steps.

The MySQL DDL in C{sql/subscribers/NNN_*.sql} is the reference for DBAs;
the L{Table} objects below define the same tables for SQLite (and for the
queries).  To change the schema: add C{sql/subscribers/00N_what.sql}, change
the tables here, and append a L{MigrationStep} with version N to L{STEPS}
whose SQLite branch does the same change.  See C{docs/subscribers.md}.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from voipgw.db.migrations import Migrator, createTablesStep, sqlDirectory

COMPONENT = "subscribers"

metadata = MetaData()

USERNAME_LENGTH = 64
DOMAIN_LENGTH = 190
CALLER_ID_LENGTH = 128

subscriberTable = Table(
    "subscriber",
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("username", String(USERNAME_LENGTH), nullable=False),
    Column("domain", String(DOMAIN_LENGTH), nullable=False),
    Column("ha1", String(32), nullable=False),
    Column("ha1_sha256", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("caller_id", String(CALLER_ID_LENGTH), nullable=False, server_default=""),
    Column("max_contacts", Integer, nullable=False, server_default="0"),
    Column("created", DateTime, nullable=False),
    Column("updated", DateTime, nullable=False),
    UniqueConstraint("username", "domain", name="subscriber_username_domain"),
    Index("subscriber_domain_username", "domain", "username"),
)

STEPS = [
    createTablesStep(
        1,
        "subscriber table",
        [subscriberTable],
        sqlDirectory(COMPONENT) / "001_initial.sql",
    ),
]

MIGRATOR = Migrator(COMPONENT, STEPS)
