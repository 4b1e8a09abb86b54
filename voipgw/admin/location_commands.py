# -*- test-case-name: tests.test_admin_location -*-
"""
C{voipgw-admin location ...}: operate the partitioned location store.

Every command takes C{--map URL}, the shared map database the nodes use
(or the environment variable C{VOIPGW_LOCATION_MAP}).  These are
synchronous tools: they use SQLAlchemy engines directly, with the same
queries the nodes run (L{voipgw.location.queries}).

  - C{init --partitions N}: create the map tables and set the partition count;
  - C{add URL --partition N --copy C --risk-group G} / C{add URL --spare ...}:
    add a database to the map;
  - C{show AOR}: the partition of an AOR and its live bindings;
  - C{partitions [--json]}: every partition's and copy's state;
  - C{disable URL} / C{enable URL}: maintenance on/off (an enabled copy comes
    back C{off}, to be resynchronised before it serves reads);
  - C{resync N}: resynchronise the C{off} copies of partition N now;
  - C{rehash --partitions M}: move bindings to their partition among M.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from voipgw.admin.cli import AdminError
from voipgw.db.database import redactURL
from voipgw.location import queries
from voipgw.location.binding import normaliseAOR
from voipgw.location.partitioning import CopyState, CopyStatus, MapError, PartitionMap, partitionOf
from voipgw.location.schema import MAP_MIGRATOR, MIGRATOR

OWNER = f"voipgw-admin@{socket.gethostname()}"


def _engine(url: str, timeout: int = 3) -> Engine:
    return create_engine(url, connect_args={"connect_timeout": timeout}, pool_pre_ping=True)


@contextmanager
def _connect(url: str, what: str = "database") -> Iterator[Connection]:
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    except OperationalError as e:
        raise AdminError(f"{what} {redactURL(url)} unavailable: {e.orig}") from None
    finally:
        engine.dispose()


def _copyConn(url: str) -> Any:
    """A connection to a copy's database, its schema ensured."""
    return _connect(url, "copy")


def _loadMap(mapURL: str) -> tuple[PartitionMap, list[CopyState]]:
    """The active map and every row (including staged rows beyond the count)."""
    with _connect(mapURL, "map database") as conn:
        if MAP_MIGRATOR.currentVersion(conn) == 0:
            raise AdminError(f"no partition map in {redactURL(mapURL)}; run 'location init'")
        MAP_MIGRATOR.check(conn)
        count, rows = queries.loadMap(conn)
    if count is None:
        count = 1 + max((c.partition for c in rows if c.partition is not None), default=-1)
    active = [c for c in rows if c.spare or (c.partition is not None and c.partition < count)]
    try:
        return PartitionMap(max(count, 1), active, requireComplete=False), rows
    except MapError as e:
        raise AdminError(f"invalid partition map: {e}") from None


def _print(args: argparse.Namespace, text: str) -> None:
    print(text, file=getattr(args, "out", None))


# -- commands ---------------------------------------------------------------------


def cmdInit(args: argparse.Namespace) -> int:
    with _connect(args.map, "map database") as conn:
        queries.ensureSchema(conn, MAP_MIGRATOR)
        count, _ = queries.loadMap(conn)
        if count is not None and count != args.partitions:
            raise AdminError(f"the map already has {count} partitions; use 'location rehash'")
        queries.setPartitions(conn, args.partitions)
    _print(args, f"partition map ready: {args.partitions} partitions")
    return 0


def cmdAdd(args: argparse.Namespace) -> int:
    if args.spare == (args.partition is not None):
        raise AdminError("give either --partition N (with --copy) or --spare")
    partitions, rows = _loadMap(args.map)
    copy = CopyState(args.url, None if args.spare else args.partition, 0 if args.spare else args.copy,
                     status=CopyStatus(args.status), spare=args.spare, riskGroup=args.risk_group or "")
    staged = [c for c in rows if c.url != args.url] + [copy]
    count = max([partitions.partitions] + [c.partition + 1 for c in staged if c.partition is not None])
    try:
        # the nodes' rules, staged partitions included
        PartitionMap(count, staged, requireComplete=False)
    except MapError as e:
        raise AdminError(str(e)) from None
    with _copyConn(args.url) as conn:
        queries.ensureSchema(conn, MIGRATOR)
    with _connect(args.map, "map database") as conn:
        queries.addCopy(conn, copy, time.time(), OWNER)
    where = "spare" if args.spare else f"partition {args.partition} copy {args.copy}"
    _print(args, f"added {redactURL(args.url)} as {where} (risk group {copy.riskGroup})")
    return 0


def cmdShow(args: argparse.Namespace) -> int:
    m, _ = _loadMap(args.map)
    aor = normaliseAOR(args.aor)
    p = m.partitionOf(aor)
    now = time.time()
    for c in m.readCopies(p):
        try:
            with _copyConn(c.url) as conn:
                bindings = queries.lookupBindings(conn, aor, now)
        except AdminError:
            continue
        _print(args, f"{aor}: partition {p}, read from copy {c.copyNo} ({redactURL(c.url)})")
        for b in sorted(bindings, key=lambda b: -b.q):
            _print(args, f"  {b.contact} q={b.q:g} expires in {b.remaining(now)}s "
                         f"call-id={b.callId} cseq={b.cseq} ua={b.userAgent!r}"
                         + (f" path={','.join(b.path)}" if b.path else ""))
        if not bindings:
            _print(args, "  (no live bindings)")
        return 0
    raise AdminError(f"partition {p} of {aor} has no reachable copy")


def cmdPartitions(args: argparse.Namespace) -> int:
    m, rows = _loadMap(args.map)
    snapshot: dict[str, Any] = m.snapshot()
    now = time.time()
    for entry in snapshot["partitions"] + snapshot["spares"]:
        for c in entry.get("copies", [entry]):
            if args.rows:
                try:
                    with _copyConn(c["url"]) as conn:
                        c["rows"] = queries.countLive(conn, now)
                except AdminError:
                    c["rows"] = None
            c["url"] = redactURL(c["url"])
    snapshot["staged"] = [c.asDict() | {"url": redactURL(c.url)}
                          for c in rows if not c.spare and c.partition is not None
                          and c.partition >= m.partitions]
    if args.json:
        _print(args, json.dumps(snapshot, indent=2, sort_keys=True))
        return 0
    _print(args, f"{m.partitions} partitions")
    for part in snapshot["partitions"]:
        state = "available" if part["available"] else "UNAVAILABLE"
        _print(args, f"partition {part['partition']}: {state}")
        for c in part["copies"]:
            _print(args, "  " + _describe(c))
    for c in snapshot["spares"]:
        _print(args, "spare  " + _describe(c))
    for c in snapshot["staged"]:
        _print(args, f"staged partition {c['partition']}  " + _describe(c))
    return 0


def _describe(c: dict[str, Any]) -> str:
    text = (f"copy {c['copyNo']} {c['status']:<11} {c['url']} risk-group={c['riskGroup']} "
            f"errors={c['errors']}")
    if c.get("failoverTime"):
        text += " failover=" + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c["failoverTime"]))
    if c.get("syncOwner"):
        text += f" sync-owner={c['syncOwner']}"
    if "rows" in c:
        text += f" rows={c['rows'] if c['rows'] is not None else 'unreachable'}"
    return text


def _setStatus(args: argparse.Namespace, status: CopyStatus, expect: list[CopyStatus],
               failover: bool) -> None:
    with _connect(args.map, "map database") as conn:
        if not queries.setStatus(conn, args.url, status, time.time(), OWNER, expect=expect,
                                 failover=failover):
            raise AdminError(f"{redactURL(args.url)} is not in the map with status "
                             + " or ".join(s.value for s in expect))


def cmdDisable(args: argparse.Namespace) -> int:
    m, rows = _loadMap(args.map)
    try:
        c = m.copy(args.url)
    except KeyError:
        raise AdminError(f"{redactURL(args.url)} is not in the map") from None
    if c.partition is not None and not args.force:
        others = [x for x in m.readCopies(c.partition) if x.url != c.url]
        if not others:
            raise AdminError(f"{redactURL(args.url)} is the last live copy of partition "
                             f"{c.partition}; use --force to take the partition down")
    _setStatus(args, CopyStatus.MAINTENANCE,
               [CopyStatus.ON, CopyStatus.OFF, CopyStatus.SYNCING], failover=True)
    _print(args, f"{redactURL(args.url)} in maintenance; nodes stop using it at their next reload")
    return 0


def cmdEnable(args: argparse.Namespace) -> int:
    _setStatus(args, CopyStatus.OFF, [CopyStatus.MAINTENANCE], failover=True)
    _print(args, f"{redactURL(args.url)} enabled: off until resynchronised (by a node's health "
                 "check, or now with 'location resync')")
    return 0


def resyncCopy(target: str, source: str, settle: float) -> int:
    """Resynchronise C{target} (claimed C{syncing}) from C{source}; the node algorithm."""
    with _copyConn(target) as conn:
        queries.ensureSchema(conn, MIGRATOR)
        queries.clearBindings(conn)
    if settle > 0:
        time.sleep(settle)
    copied, after = 0, None
    while True:
        with _copyConn(source) as conn:
            chunk = queries.readChunk(conn, after, 2000)
        if not chunk:
            break
        with _copyConn(target) as conn:
            queries.mergeRows(conn, chunk)
        copied += len(chunk)
        after = (chunk[-1]["aor"], chunk[-1]["binding_key"])
    with _copyConn(target) as conn:
        targetKeys = queries.readKeys(conn)
    with _copyConn(source) as conn:
        gone = targetKeys - queries.readKeys(conn)
    if gone:
        with _copyConn(source) as conn:
            gone -= queries.readKeys(conn)
        with _copyConn(target) as conn:
            queries.deleteKeys(conn, sorted(gone))
    return copied


def cmdResync(args: argparse.Namespace) -> int:
    m, _ = _loadMap(args.map)
    if not 0 <= args.partition < m.partitions:
        raise AdminError(f"unknown partition number {args.partition} (0..{m.partitions - 1})")
    live = m.readCopies(args.partition)
    if not live:
        raise AdminError(f"partition {args.partition} has no live copy to resync from")
    targets = [c for c in m.copiesOf(args.partition) if c.status is CopyStatus.OFF]
    if not targets:
        _print(args, f"partition {args.partition}: no copy needs a resync")
        return 0
    for c in targets:
        with _connect(args.map, "map database") as conn:
            if not queries.claimSync(conn, c.url, OWNER, time.time(), staleAfter=600):
                raise AdminError(f"{redactURL(c.url)} is being resynchronised by someone else")
        try:
            n = resyncCopy(c.url, live[0].url, args.settle)
        except AdminError:
            with _connect(args.map, "map database") as conn:
                queries.setStatus(conn, c.url, CopyStatus.OFF, time.time(), OWNER,
                                  expect=[CopyStatus.SYNCING])
            raise
        with _connect(args.map, "map database") as conn:
            queries.finishSync(conn, c.url, OWNER, time.time())
        _print(args, f"partition {args.partition}: {redactURL(c.url)} resynchronised from "
                     f"{redactURL(live[0].url)} ({n} rows)")
    return 0


def _moveRows(m: PartitionMap, old: int, newCount: int, rows: list[dict[str, Any]]) -> int:
    """Merge the rows of partition C{old} that belong elsewhere into every live copy there."""
    moving: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        q = partitionOf(r["aor"], newCount)
        if q != old:
            moving.setdefault(q, []).append(r)
    for q, batch in moving.items():
        copies = m.writeCopies(q)
        if not copies:
            raise AdminError(f"partition {q} has no live copy; nothing moved there")
        for c in copies:
            with _copyConn(c.url) as conn:
                queries.ensureSchema(conn, MIGRATOR)
                queries.mergeRows(conn, batch)
    return sum(len(b) for b in moving.values())


def _readPartition(m: PartitionMap, p: int) -> list[dict[str, Any]]:
    for c in m.readCopies(p):
        try:
            with _copyConn(c.url) as conn:
                return queries.readRows(conn)
        except AdminError:
            continue
    raise AdminError(f"partition {p} has no reachable copy")


def cmdRehash(args: argparse.Namespace) -> int:
    """
    Move every binding to its partition among C{M}: copy movers to their new
    partition (newer rows win), switch the count, wait for the nodes to
    reload, copy again what was written meanwhile, then delete the movers
    from their old partition.  Nothing is deleted before it is stored in
    every live copy of its new partition.
    """
    current, rows = _loadMap(args.map)
    n, target = current.partitions, args.partitions
    if target < 1:
        raise AdminError("--partitions must be at least 1")
    if target == n:
        _print(args, f"already {n} partitions")
        return 0
    staged = [c for c in rows if c.spare or (c.partition is not None and c.partition < max(n, target))]
    try:
        full = PartitionMap(max(n, target), staged)
    except MapError as e:
        raise AdminError(f"add the copies of the new partitions first ('location add'): {e}") from None
    for p in range(target):
        if not full.readCopies(p):
            raise AdminError(f"partition {p} has no live copy")
    moved = sum(_moveRows(full, p, target, _readPartition(full, p)) for p in range(n))
    with _connect(args.map, "map database") as conn:
        queries.setPartitions(conn, target)
    _print(args, f"copied {moved} bindings; partitions {n} -> {target}; waiting {args.settle:g}s "
                 "for the nodes to reload")
    if args.settle > 0:
        time.sleep(args.settle)
    deleted = 0
    for p in range(n):
        partitionRows = _readPartition(full, p)
        _moveRows(full, p, target, partitionRows)
        gone = sorted((r["aor"], r["binding_key"]) for r in partitionRows
                      if partitionOf(r["aor"], target) != p)
        for c in full.writeCopies(p):
            with _copyConn(c.url) as conn:
                queries.deleteKeys(conn, gone)
        deleted += len(gone)
    _print(args, f"rehash done: {deleted} bindings moved to their new partition")
    return 0


# -- parser -----------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("location", help="operate the partitioned location store")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def add(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help)
        p.add_argument("--map", default=os.environ.get("VOIPGW_LOCATION_MAP"),
                       required="VOIPGW_LOCATION_MAP" not in os.environ,
                       help="URL of the map database (default: $VOIPGW_LOCATION_MAP)")
        p.set_defaults(func=func)
        return p

    p = add("init", cmdInit, "create the map tables and set the partition count")
    p.add_argument("--partitions", type=int, required=True)
    p = add("add", cmdAdd, "add a copy or a spare to the map")
    p.add_argument("url")
    p.add_argument("--partition", type=int)
    p.add_argument("--copy", type=int, default=1, choices=(1, 2))
    p.add_argument("--spare", action="store_true")
    p.add_argument("--risk-group", default="")
    p.add_argument("--status", default="on", choices=[s.value for s in CopyStatus])
    p = add("show", cmdShow, "show the partition and live bindings of an AOR")
    p.add_argument("aor")
    p = add("partitions", cmdPartitions, "show every partition's and copy's state")
    p.add_argument("--json", action="store_true")
    p.add_argument("--rows", action="store_true", help="count each copy's live bindings")
    p = add("disable", cmdDisable, "put a copy in maintenance")
    p.add_argument("url")
    p.add_argument("--force", action="store_true")
    p = add("enable", cmdEnable, "end maintenance (the copy is resynchronised before reads)")
    p.add_argument("url")
    p = add("resync", cmdResync, "resynchronise the off copies of a partition now")
    p.add_argument("partition", type=int)
    p.add_argument("--settle", type=float, default=11.0,
                   help="seconds to wait for nodes to start writing to the copy (> reload_interval)")
    p = add("rehash", cmdRehash, "change the number of partitions, moving bindings")
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--settle", type=float, default=11.0,
                   help="seconds to wait for nodes to reload the map (> reload_interval)")
