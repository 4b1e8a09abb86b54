# -*- test-case-name: tests.test_location_partitioned -*-
"""
The location tables and their upgrade steps.

Two schema components:

  - C{location} (L{MIGRATOR}): the C{location_binding} table, in every
    partition copy's database;
  - C{location_map} (L{MAP_MIGRATOR}, C{voipgw.location.schema:MAP_MIGRATOR}
    for C{voipgw-admin db}): the shared partition map, settings and expiry
    leases, in the map database.

The MySQL DDL in C{sql/location/} is the reference for DBAs; the L{Table}
objects define the same tables for SQLite and for the queries.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.mysql import DOUBLE

from voipgw.db.migrations import Migrator, createTablesStep, sqlDirectory

COMPONENT = "location"
MAP_COMPONENT = "location_map"

metadata = MetaData()

Double = Float().with_variant(DOUBLE(asdecimal=False), "mysql", "mariadb")

bindingTable = Table(
    "location_binding",
    metadata,
    Column("aor", String(255), primary_key=True),
    Column("binding_key", String(255), primary_key=True),
    Column("contact", String(1024), nullable=False),
    Column("expires", Double, nullable=False),
    Column("q", Double, nullable=False, server_default="1"),
    Column("call_id", String(255), nullable=False, server_default=""),
    Column("cseq", BigInteger, nullable=False, server_default="0"),
    Column("path", Text, nullable=False),
    Column("received", String(255), nullable=False, server_default=""),
    Column("instance_id", String(255), nullable=False, server_default=""),
    Column("reg_id", Integer, nullable=False, server_default="0"),
    Column("user_agent", String(255), nullable=False, server_default=""),
    Column("socket", String(128), nullable=False, server_default=""),
    Column("updated", Double, nullable=False, server_default="0"),
    Column("flags", Integer, nullable=False, server_default="0"),
    Column("extra", Text, nullable=False),
    Index("location_binding_expires", "expires"),
)

mapTable = Table(
    "location_partition_map",
    metadata,
    Column("url", String(255), primary_key=True),
    Column("partition_no", Integer, nullable=True),
    Column("copy_no", Integer, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False, server_default="on"),
    Column("error_count", Integer, nullable=False, server_default="0"),
    Column("failover_time", Double, nullable=False, server_default="0"),
    Column("spare", SmallInteger, nullable=False, server_default="0"),
    Column("risk_group", String(64), nullable=False, server_default=""),
    Column("sync_owner", String(128), nullable=False, server_default=""),
    Column("sync_started", Double, nullable=False, server_default="0"),
    Column("changed_by", String(128), nullable=False, server_default=""),
    Column("changed", Double, nullable=False, server_default="0"),
    UniqueConstraint("partition_no", "copy_no", name="location_partition_copy"),
)

settingsTable = Table(
    "location_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

leaseTable = Table(
    "location_lease",
    metadata,
    Column("partition_no", Integer, primary_key=True, autoincrement=False),
    Column("owner", String(128), nullable=False),
    Column("expires", Double, nullable=False),
)

MIGRATOR = Migrator(
    COMPONENT,
    [createTablesStep(1, "location_binding table", [bindingTable],
                      sqlDirectory(COMPONENT) / "001_bindings.sql")],
)

MAP_MIGRATOR = Migrator(
    MAP_COMPONENT,
    [createTablesStep(1, "partition map, settings and leases",
                      [mapTable, settingsTable, leaseTable],
                      sqlDirectory(COMPONENT) / "map_001_partition_map.sql")],
)
