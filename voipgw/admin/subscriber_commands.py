# -*- test-case-name: tests.test_admin_subscribers -*-
"""
C{voipgw-admin subscriber add|remove|passwd|list|import}.

Synchronous: the SQL of L{voipgw.subscribers.queries} on an engine, no
reactor.  Writes go to the database given by C{--db}, which for a
replicated setup must be the master.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from typing import Any, Iterator, TextIO

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from voipgw.admin.cli import AdminError
from voipgw.admin.db_commands import addDatabaseOption, connecting, databaseURL, openEngine
from voipgw.subscribers import queries
from voipgw.subscribers.errors import SubscriberError
from voipgw.subscribers.schema import MIGRATOR

IMPORT_BATCH = 5000
SHOWN_DUPLICATES = 20


def parseAOR(text: str) -> tuple[str, str]:
    """C{USER@DOMAIN} → normalised (username, domain)."""
    username, at, domain = text.rpartition("@")
    if not at or not username or not domain:
        raise AdminError(f"expected USER@DOMAIN, not {text!r}")
    try:
        return queries.normaliseKey(username, domain)
    except SubscriberError as e:
        raise AdminError(str(e)) from None


def _engine(args: argparse.Namespace) -> Engine:
    engine = openEngine(databaseURL(args))
    with connecting(engine) as conn:
        MIGRATOR.check(conn)
    return engine


def _run(args: argparse.Namespace, func: Any, *fargs: Any) -> Any:
    engine = _engine(args)
    try:
        with connecting(engine) as conn:
            return func(conn, *fargs)
    except SubscriberError as e:
        raise AdminError(str(e)) from None
    finally:
        engine.dispose()


def cmdAdd(args: argparse.Namespace) -> int:
    username, domain = parseAOR(args.aor)
    settings: dict[str, Any] = {"enabled": not args.disabled}
    if args.caller_id is not None:
        settings["callerId"] = args.caller_id
    if args.max_contacts is not None:
        settings["maxContacts"] = args.max_contacts
    try:
        queries.validatePassword(args.password)
        values = queries.validateSettings(settings)
    except SubscriberError as e:
        raise AdminError(str(e)) from None
    _run(args, queries.addSubscriber, username, domain, args.password, time.time(), values)
    print(f"added {username}@{domain}")
    return 0


def cmdRemove(args: argparse.Namespace) -> int:
    username, domain = parseAOR(args.aor)
    _run(args, queries.removeSubscriber, username, domain)
    print(f"removed {username}@{domain}")
    return 0


def cmdPasswd(args: argparse.Namespace) -> int:
    username, domain = parseAOR(args.aor)
    try:
        queries.validatePassword(args.password)
    except SubscriberError as e:
        raise AdminError(str(e)) from None
    _run(args, queries.setPassword, username, domain, args.password, time.time())
    print(f"password of {username}@{domain} changed")
    return 0


def cmdList(args: argparse.Namespace) -> int:
    domain = None
    if args.domain is not None:
        try:
            domain = queries.normaliseDomain(args.domain)
        except SubscriberError as e:
            raise AdminError(str(e)) from None
    engine = _engine(args)
    count = 0
    try:
        offset = 0
        while True:
            with connecting(engine) as conn:
                page = queries.listSubscribers(conn, domain, limit=1000, offset=offset)
            if args.limit:
                page = page[: args.limit - count]
            for s in page:
                flags = [] if s.enabled else ["disabled"]
                if s.callerId:
                    flags.append(f"caller-id={s.callerId}")
                if s.maxContacts:
                    flags.append(f"max-contacts={s.maxContacts}")
                print(f"{s.username}@{s.domain}" + ("\t" + " ".join(flags) if flags else ""))
            count += len(page)
            if len(page) < 1000 or (args.limit and count >= args.limit):
                break
            offset += len(page)
    finally:
        engine.dispose()
    print(f"{count} subscriber{'s' if count != 1 else ''}", file=sys.stderr)
    return 0


# -- import ---------------------------------------------------------------------


def _rows(stream: TextIO, path: str) -> Iterator[tuple[int, str, str, str]]:
    """
    (line, username, domain, password) of each CSV row, normalised; a
    header row C{username,domain,password} is skipped, blank lines too.
    Raises L{AdminError} naming the line of a malformed row.
    """
    reader = csv.reader(stream, strict=True)
    try:
        for fields in reader:
            line = reader.line_num
            if not fields or fields == [""]:
                continue
            if line == 1 and [f.strip().lower() for f in fields] == ["username", "domain", "password"]:
                continue
            if len(fields) != 3:
                raise AdminError(
                    f"{path}, line {line}: expected 3 fields username,domain,password, found {len(fields)}"
                )
            try:
                username, domain = queries.normaliseKey(fields[0], fields[1])
                queries.validatePassword(fields[2])
            except SubscriberError as e:
                raise AdminError(f"{path}, line {line}: {e}") from None
            yield line, username, domain, fields[2]
    except csv.Error as e:
        raise AdminError(f"{path}, line {reader.line_num}: malformed CSV: {e}") from None
    except UnicodeDecodeError as e:
        raise AdminError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _open(path: str) -> TextIO:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise AdminError(f"cannot read {path}: {e.strerror}") from None


class _Importer:
    def __init__(self, engine: Engine, out: TextIO, quiet: bool) -> None:
        self.engine = engine
        self.out = out
        self.quiet = quiet
        self.imported = 0
        self.duplicates = 0
        self.started = time.monotonic()
        self._lastProgress = self.started

    def duplicate(self, path: str, line: int, username: str, domain: str, where: str) -> None:
        self.duplicates += 1
        if self.duplicates <= SHOWN_DUPLICATES:
            print(f"{path}, line {line}: duplicate subscriber {username}@{domain} ({where}), skipped", file=self.out)
        elif self.duplicates == SHOWN_DUPLICATES + 1:
            print("further duplicates are counted but not listed", file=self.out)

    def batch(self, path: str, batch: list[tuple[int, str, str, str]]) -> None:
        now = time.time()
        # Duplicates within the batch (earlier batches are already stored).
        seen: dict[tuple[str, str], int] = {}
        unique = []
        for line, username, domain, password in batch:
            if (username, domain) in seen:
                self.duplicate(path, line, username, domain, f"repeats line {seen[username, domain]}")
                continue
            seen[username, domain] = line
            unique.append((line, username, domain, password))
        for attempt in range(3):
            try:
                with connecting(self.engine) as conn:
                    stored = self._insert(conn, unique, now)
                break
            except IntegrityError as e:
                # Someone added one of them meanwhile: check again.
                if attempt == 2:
                    raise AdminError(f"{path}: cannot import lines {batch[0][0]}-{batch[-1][0]}: {e.orig}") from None
        for line, username, domain in stored:
            self.duplicate(path, line, username, domain, "already provisioned")
        self.imported += len(unique) - len(stored)
        self.progress()

    def _insert(self, conn: Connection, rows: list[tuple[int, str, str, str]], now: float) -> list[tuple[int, str, str]]:
        existing = queries.existingKeys(conn, [(u, d) for _, u, d, _ in rows])
        queries.insertMany(
            conn,
            [queries.importRow(u, d, p, now) for _, u, d, p in rows if (u, d) not in existing],
        )
        return [(line, u, d) for line, u, d, _ in rows if (u, d) in existing]

    def progress(self, final: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not final and now - self._lastProgress < 2.0):
            return
        self._lastProgress = now
        elapsed = max(now - self.started, 1e-6)
        print(
            f"{'imported' if final else 'importing:'} {self.imported} subscribers, "
            f"{self.duplicates} duplicates skipped, {elapsed:.1f}s ({self.imported / elapsed:.0f}/s)",
            file=self.out,
        )


def cmdImport(args: argparse.Namespace) -> int:
    path = args.file
    # First pass: validate every row, so a malformed file changes nothing.
    with _open(path) as stream:
        total = sum(1 for _ in _rows(stream, path))
    engine = _engine(args)
    importer = _Importer(engine, sys.stderr, args.quiet)
    try:
        with _open(path) as stream:
            batch: list[tuple[int, str, str, str]] = []
            for row in _rows(stream, path):
                batch.append(row)
                if len(batch) >= args.batch_size:
                    importer.batch(path, batch)
                    batch = []
            if batch:
                importer.batch(path, batch)
    finally:
        engine.dispose()
    importer.progress(final=True)
    print(f"{importer.imported} of {total} subscribers imported, {importer.duplicates} duplicates")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _atLeastOne(text: str) -> int:
    value = _positive(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("subscriber", help="provision subscribers")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    add = commands.add_parser("add", help="add a subscriber")
    add.add_argument("aor", metavar="USER@DOMAIN")
    add.add_argument("--password", required=True)
    add.add_argument("--caller-id", default=None)
    add.add_argument("--max-contacts", type=_positive, default=None)
    add.add_argument("--disabled", action="store_true", help="provision it disabled")
    addDatabaseOption(add)
    add.set_defaults(func=cmdAdd)

    remove = commands.add_parser("remove", help="remove a subscriber")
    remove.add_argument("aor", metavar="USER@DOMAIN")
    addDatabaseOption(remove)
    remove.set_defaults(func=cmdRemove)

    passwd = commands.add_parser("passwd", help="set a subscriber's password")
    passwd.add_argument("aor", metavar="USER@DOMAIN")
    passwd.add_argument("--password", required=True)
    addDatabaseOption(passwd)
    passwd.set_defaults(func=cmdPasswd)

    listing = commands.add_parser("list", help="list subscribers by domain and username")
    listing.add_argument("--domain", default=None)
    listing.add_argument("--limit", type=_positive, default=0, help="stop after about this many")
    addDatabaseOption(listing)
    listing.set_defaults(func=cmdList)

    importing = commands.add_parser(
        "import", help="import a CSV file of username,domain,password rows ('-': stdin)"
    )
    importing.add_argument("file", metavar="FILE")
    importing.add_argument("--batch-size", type=_atLeastOne, default=IMPORT_BATCH)
    importing.add_argument("--quiet", action="store_true", help="no progress output")
    addDatabaseOption(importing)
    importing.set_defaults(func=cmdImport)
