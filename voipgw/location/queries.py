# -*- test-case-name: tests.test_location_partitioned -*-
"""
The location store's SQL, as functions of a SQLAlchemy C{Connection}.

Each function runs inside a transaction: on a pool thread through
C{Database.runInteraction(desc, func, ...)} in the node, or inside
C{engine.begin()} in C{voipgw-admin}.  They take and return plain data
(L{Binding}s, dicts, L{CopyState}s): no SQLAlchemy object leaves them.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from voipgw.db.migrations import Migrator
from voipgw.location.binding import Binding
from voipgw.location.partitioning import CopyState, CopyStatus
from voipgw.location.schema import bindingTable as B
from voipgw.location.schema import leaseTable as L
from voipgw.location.schema import mapTable as M
from voipgw.location.schema import settingsTable as S

CHUNK = 500


def ensureSchema(conn: Connection, migrator: Migrator) -> None:
    """Create the component's tables if absent, else check their version."""
    if migrator.currentVersion(conn) == 0:
        migrator.initialise(conn)
    else:
        migrator.check(conn)


def ping(conn: Connection) -> None:
    conn.exec_driver_sql("SELECT 1")


# -- bindings ------------------------------------------------------------------


def bindingToRow(b: Binding) -> dict[str, Any]:
    return {
        "aor": b.aor, "binding_key": b.key, "contact": b.contact, "expires": b.expires,
        "q": b.q, "call_id": b.callId, "cseq": b.cseq, "path": json.dumps(list(b.path)),
        "received": b.received, "instance_id": b.instanceId, "reg_id": b.regId,
        "user_agent": b.userAgent, "socket": b.socket, "updated": b.updated,
        "flags": b.flags, "extra": json.dumps([list(p) for p in b.extra]),
    }


def rowToBinding(r: Any) -> Binding:
    m = r._mapping if hasattr(r, "_mapping") else r
    return Binding(
        aor=m["aor"], contact=m["contact"], expires=float(m["expires"]), q=float(m["q"]),
        callId=m["call_id"], cseq=int(m["cseq"]), path=tuple(json.loads(m["path"] or "[]")),
        received=m["received"], instanceId=m["instance_id"], regId=int(m["reg_id"]),
        userAgent=m["user_agent"], socket=m["socket"], updated=float(m["updated"]),
        flags=int(m["flags"]),
        extra=tuple((str(k), str(v)) for k, v in json.loads(m["extra"] or "[]")),
    )


def _upsert(conn: Connection, rows: list[dict[str, Any]], newerOnly: bool) -> None:
    """Insert or replace rows by (aor, binding_key); if C{newerOnly}, keep a
    stored row whose C{updated} is not older than the incoming one."""
    if not rows:
        return
    columns = [c.name for c in B.columns if c.name not in ("aor", "binding_key")]
    # "updated" last: MySQL evaluates assignments left to right
    columns.sort(key=lambda n: n == "updated")
    if conn.dialect.name in ("mysql", "mariadb"):
        stmt = mysql.insert(B)
        ins = stmt.inserted
        values: list[tuple[str, Any]]
        if newerOnly:
            values = [(n, func.IF(ins.updated > B.c.updated, ins[n], B.c[n])) for n in columns]
        else:
            values = [(n, ins[n]) for n in columns]
        conn.execute(stmt.on_duplicate_key_update(values), rows)
    else:
        sstmt = sqlite.insert(B)
        excluded = sstmt.excluded
        conn.execute(
            sstmt.on_conflict_do_update(
                index_elements=["aor", "binding_key"],
                set_={n: excluded[n] for n in columns},
                where=(excluded.updated > B.c.updated) if newerOnly else None,
            ),
            rows,
        )


def saveBinding(conn: Connection, row: dict[str, Any]) -> None:
    _upsert(conn, [row], newerOnly=False)


def lookupBindings(conn: Connection, aor: str, now: float) -> list[Binding]:
    rows = conn.execute(
        select(B).where(B.c.aor == aor, B.c.expires > now).order_by(B.c.binding_key)
    )
    return [rowToBinding(r) for r in rows]


def removeBinding(conn: Connection, aor: str, key: str) -> bool:
    return conn.execute(delete(B).where(B.c.aor == aor, B.c.binding_key == key)).rowcount > 0


def removeAor(conn: Connection, aor: str) -> int:
    return int(conn.execute(delete(B).where(B.c.aor == aor)).rowcount)


def removeExpired(conn: Connection, now: float, limit: int = 10000) -> int:
    """Delete expired rows in batches of C{limit} (short locks)."""
    total = 0
    while True:
        if conn.dialect.name in ("mysql", "mariadb"):
            n = conn.exec_driver_sql(
                "DELETE FROM location_binding WHERE expires <= %s LIMIT %s", (now, limit)
            ).rowcount
        else:
            n = conn.execute(delete(B).where(B.c.expires <= now)).rowcount
        total += n
        if n < limit:
            return total


def countLive(conn: Connection, now: float) -> int:
    return int(conn.execute(select(func.count()).select_from(B).where(B.c.expires > now)).scalar_one())


def readRows(conn: Connection) -> list[dict[str, Any]]:
    """Every row of this database's C{location_binding}, as plain dicts."""
    return [dict(r._mapping) for r in conn.execute(select(B))]


def readChunk(conn: Connection, after: tuple[str, str] | None, limit: int) -> list[dict[str, Any]]:
    """
    Up to C{limit} rows in primary-key order, after the key C{after}: a
    resync copies a partition in chunks, never holding it all in memory.
    """
    query = select(B).order_by(B.c.aor, B.c.binding_key).limit(limit)
    if after is not None:
        aor, key = after
        query = query.where(or_(B.c.aor > aor, and_(B.c.aor == aor, B.c.binding_key > key)))
    return [dict(r._mapping) for r in conn.execute(query)]


def readKeys(conn: Connection) -> set[tuple[str, str]]:
    return {(r.aor, r.binding_key) for r in conn.execute(select(B.c.aor, B.c.binding_key))}


def clearBindings(conn: Connection) -> int:
    return int(conn.execute(delete(B)).rowcount)


def mergeRows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Upsert C{rows} in chunks, never replacing a newer stored row."""
    for i in range(0, len(rows), CHUNK):
        _upsert(conn, rows[i : i + CHUNK], newerOnly=True)


def deleteKeys(conn: Connection, keys: Iterable[tuple[str, str]]) -> int:
    n = 0
    for aor, key in keys:
        n += conn.execute(delete(B).where(B.c.aor == aor, B.c.binding_key == key)).rowcount
    return n


# -- the partition map -----------------------------------------------------------


def loadMap(conn: Connection) -> tuple[int | None, list[CopyState]]:
    """The partition count (C{None} if not set) and every row of the map."""
    copies = [
        CopyState(
            url=r.url, partition=r.partition_no, copyNo=r.copy_no, status=CopyStatus(r.status),
            errors=r.error_count, failoverTime=float(r.failover_time), spare=bool(r.spare),
            riskGroup=r.risk_group, syncOwner=r.sync_owner, syncStarted=float(r.sync_started),
        )
        for r in conn.execute(select(M).order_by(M.c.partition_no, M.c.copy_no, M.c.url))
    ]
    value = conn.execute(select(S.c.value).where(S.c.name == "partitions")).scalar()
    return (int(value) if value is not None else None), copies


def writeMap(conn: Connection, partitions: int, copies: Iterable[CopyState], now: float,
             by: str) -> None:
    """Replace the whole map (used by C{voipgw-admin} and tests)."""
    conn.execute(delete(M))
    for c in copies:
        conn.execute(M.insert().values(
            url=c.url, partition_no=c.partition, copy_no=c.copyNo, status=c.status.value,
            error_count=c.errors, failover_time=c.failoverTime, spare=int(c.spare),
            risk_group=c.riskGroup, changed_by=by, changed=now,
        ))
    setPartitions(conn, partitions)


def addCopy(conn: Connection, c: CopyState, now: float, by: str) -> None:
    """Add one database to the map (or replace its row)."""
    conn.execute(delete(M).where(M.c.url == c.url))
    conn.execute(M.insert().values(
        url=c.url, partition_no=c.partition, copy_no=c.copyNo, status=c.status.value,
        error_count=c.errors, failover_time=c.failoverTime, spare=int(c.spare),
        risk_group=c.riskGroup, changed_by=by, changed=now,
    ))


def setPartitions(conn: Connection, partitions: int) -> None:
    if conn.execute(update(S).where(S.c.name == "partitions").values(value=str(partitions))).rowcount == 0:
        if conn.execute(select(S.c.name).where(S.c.name == "partitions")).first() is None:
            conn.execute(S.insert().values(name="partitions", value=str(partitions)))


def setStatus(conn: Connection, url: str, status: CopyStatus, now: float, by: str,
              errors: int | None = None, expect: Iterable[CopyStatus] | None = None,
              failover: bool = False) -> bool:
    """Set C{url}'s status (only if currently one of C{expect}); C{True} if changed."""
    values: dict[str, Any] = {"status": status.value, "changed_by": by, "changed": now}
    if errors is not None:
        values["error_count"] = errors
    if failover:
        values["failover_time"] = now
    if status is not CopyStatus.SYNCING:
        values["sync_owner"] = ""
    where = [M.c.url == url]
    if expect is not None:
        where.append(M.c.status.in_([s.value for s in expect]))
    return conn.execute(update(M).where(*where).values(**values)).rowcount > 0


def claimSync(conn: Connection, url: str, owner: str, now: float, staleAfter: float) -> bool:
    """
    Claim the resync of C{url}: C{off} (or C{syncing} under a claim older
    than C{staleAfter}) becomes C{syncing} owned by C{owner}.  Exactly one
    node wins.
    """
    return conn.execute(
        update(M)
        .where(M.c.url == url, M.c.spare == 0, or_(
            M.c.status == CopyStatus.OFF.value,
            and_(M.c.status == CopyStatus.SYNCING.value,
                 or_(M.c.sync_owner == owner, M.c.sync_started < now - staleAfter)),
        ))
        .values(status=CopyStatus.SYNCING.value, sync_owner=owner, sync_started=now,
                changed_by=owner, changed=now, error_count=0)
    ).rowcount > 0


def finishSync(conn: Connection, url: str, owner: str, now: float) -> bool:
    """The resync by C{owner} is complete: C{syncing} becomes C{on}."""
    return conn.execute(
        update(M)
        .where(M.c.url == url, M.c.status == CopyStatus.SYNCING.value, M.c.sync_owner == owner)
        .values(status=CopyStatus.ON.value, sync_owner="", changed_by=owner, changed=now,
                error_count=0)
    ).rowcount > 0


def promoteSpare(conn: Connection, failedUrl: str, spareUrl: str, owner: str, now: float) -> bool:
    """
    Atomically replace the C{off} copy C{failedUrl} by the available spare
    C{spareUrl} (which becomes C{syncing}, claimed by C{owner}); the failed
    database joins the spares, C{off}.  C{False} if another node did it first.
    """
    failed = conn.execute(
        select(M.c.partition_no, M.c.copy_no).where(
            M.c.url == failedUrl, M.c.status == CopyStatus.OFF.value, M.c.spare == 0
        ).with_for_update()
    ).first()
    spare = conn.execute(
        select(M.c.url).where(
            M.c.url == spareUrl, M.c.status == CopyStatus.ON.value, M.c.spare == 1
        ).with_for_update()
    ).first()
    if failed is None or spare is None:
        return False
    conn.execute(update(M).where(M.c.url == failedUrl).values(
        partition_no=None, copy_no=0, spare=1, status=CopyStatus.OFF.value, sync_owner="",
        changed_by=owner, changed=now))
    conn.execute(update(M).where(M.c.url == spareUrl).values(
        partition_no=failed.partition_no, copy_no=failed.copy_no, spare=0,
        status=CopyStatus.SYNCING.value, sync_owner=owner, sync_started=now, error_count=0,
        changed_by=owner, changed=now))
    return True


def acquireLease(conn: Connection, partition: int, owner: str, now: float, ttl: float) -> bool:
    """Take or renew the expiry lease of C{partition}; C{True} if C{owner} holds it."""
    row = conn.execute(
        select(L.c.owner, L.c.expires).where(L.c.partition_no == partition).with_for_update()
    ).first()
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(L.insert().values(partition_no=partition, owner=owner, expires=now + ttl))
        except IntegrityError:
            return False  # another node inserted it first
        return True
    if row.owner == owner or row.expires < now:
        conn.execute(update(L).where(L.c.partition_no == partition).values(owner=owner, expires=now + ttl))
        return True
    return False


def releaseLeases(conn: Connection, owner: str) -> None:
    conn.execute(delete(L).where(L.c.owner == owner))
