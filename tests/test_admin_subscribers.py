"""Tests for C{voipgw-admin db ...} and C{voipgw-admin subscriber ...}."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

from sqlalchemy import create_engine, select, text
from twisted.trial.unittest import SkipTest, TestCase

from tests import mariadb
from voipgw.admin.cli import main
from voipgw.db.migrations import MigrationStep, Migrator
from voipgw.subscribers import computeHA1
from voipgw.subscribers.schema import subscriberTable

EVIL = "o'brien\"; DROP TABLE subscriber--"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class AdminTestsMixin:
    url: str

    def makeURL(self) -> str:
        raise NotImplementedError

    def setUp(self) -> None:
        self.url = self.makeURL()

    def admin(self, *argv: str, db: bool = True) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([*argv, "--db", self.url] if db else list(argv))
        return status, out.getvalue(), err.getvalue()

    def ok(self, *argv: str) -> str:
        status, out, err = self.admin(*argv)
        self.assertEqual(status, 0, err)
        return out

    def fails(self, *argv: str) -> str:
        status, out, err = self.admin(*argv)
        self.assertEqual(status, 1, out)
        self.assertTrue(err.startswith("voipgw-admin: "), err)
        self.assertEqual(err.count("\n"), 1, "not one line: " + err)
        return err

    def rows(self) -> dict[str, tuple]:
        engine = create_engine(self.url)
        with engine.connect() as conn:
            result = {
                f"{r.username}@{r.domain}": (r.ha1, r.ha1_sha256, bool(r.enabled), r.caller_id, r.max_contacts)
                for r in conn.execute(select(subscriberTable))
            }
        engine.dispose()
        return result

    def test_lifecycle(self) -> None:
        self.assertIn("db init", self.fails("subscriber", "list"))
        self.assertIn("created schema version 1", self.ok("db", "init"))
        self.assertIn("already at version 1", self.ok("db", "init"))
        self.assertIn("already at version 1", self.ok("db", "upgrade"))
        self.assertIn("subscribers: version 1, latest 1", self.ok("db", "status"))
        self.ok("subscriber", "add", "Alice@Example.COM", "--password", "s3cret",
                "--caller-id", "+4930123", "--max-contacts", "2")
        self.ok("subscriber", "add", f"{EVIL}@example.com", "--password", "x'y", "--disabled")
        rows = self.rows()
        self.assertEqual(
            rows["alice@example.com"],
            (computeHA1("alice", "example.com", "s3cret"), computeHA1("alice", "example.com", "s3cret", "SHA-256"),
             True, "+4930123", 2),
        )
        self.assertFalse(rows[f"{EVIL.lower()}@example.com"][2])
        self.assertNotIn("s3cret", repr(rows))
        self.assertIn("already exists", self.fails("subscriber", "add", "alice@EXAMPLE.com", "--password", "x"))
        listing = self.ok("subscriber", "list", "--domain", "Example.com")
        self.assertEqual(
            listing.splitlines(),
            ["alice@example.com\tcaller-id=+4930123 max-contacts=2", f"{EVIL.lower()}@example.com\tdisabled"],
        )
        self.assertEqual(self.ok("subscriber", "list", "--domain", "other.example"), "")
        self.ok("subscriber", "passwd", "ALICE@example.com", "--password", "new")
        self.assertEqual(self.rows()["alice@example.com"][0], computeHA1("alice", "example.com", "new"))
        self.assertIn("no subscriber bob@example.com", self.fails("subscriber", "passwd", "bob@example.com", "--password", "x"))
        self.assertIn("no subscriber bob@example.com", self.fails("subscriber", "remove", "bob@example.com"))
        self.ok("subscriber", "remove", f"{EVIL}@example.com")
        self.assertEqual(list(self.rows()), ["alice@example.com"])
        self.assertIn("USER@DOMAIN", self.fails("subscriber", "add", "nodomain", "--password", "x"))
        self.assertIn("password must not be empty", self.fails("subscriber", "add", "a@b.c", "--password", ""))

    def test_import(self) -> None:
        self.ok("db", "init")
        self.ok("subscriber", "add", "user17@example.com", "--password", "old")
        path = os.path.abspath(self.mktemp())
        count = 20_000
        with open(path, "w", newline="") as f:
            f.write("username,domain,password\n")
            for i in range(count):
                f.write(f"user{i},example.com,pw{i}\n")
            f.write('"o\'brien"";x",Example.COM,"p,w"\n')
            f.write("USER5,example.com,again\n")
            f.write("User19999,Example.com,same-batch\n")
        status, out, err = self.admin("subscriber", "import", path, "--batch-size", "3000")
        self.assertEqual(status, 0, err)
        self.assertIn(f"{count} of {count + 3} subscribers imported, 3 duplicates", out)
        self.assertIn(f"line {17 + 2}: duplicate subscriber user17@example.com (already provisioned)", err)
        self.assertIn(f"line {count + 4}: duplicate subscriber user19999@example.com (repeats line {count + 1})", err)
        self.assertIn(f"line {count + 3}: duplicate subscriber user5@example.com (already provisioned)", err)
        self.assertIn("imported 20000 subscribers, 3 duplicates skipped", err)
        rows = self.rows()
        self.assertEqual(len(rows), count + 1)
        self.assertEqual(rows["user17@example.com"][0], computeHA1("user17", "example.com", "old"))
        self.assertEqual(rows["user19999@example.com"][0], computeHA1("user19999", "example.com", "pw19999"))
        self.assertEqual(rows["o'brien\";x@example.com"][0], computeHA1("o'brien\";x", "example.com", "p,w"))
        # Importing again adds nothing.
        status, out, err = self.admin("subscriber", "import", path, "--quiet")
        self.assertIn(f"0 of {count + 3} subscribers imported, {count + 3} duplicates", out)
        self.assertIn("further duplicates are counted but not listed", err)

    def test_importMalformed(self) -> None:
        self.ok("db", "init")
        path = os.path.abspath(self.mktemp())
        for content, message in (
            ("a,x.com,p\nb,x.com\n", "line 2: expected 3 fields"),
            ("a,x.com,p\n\nc,x.com,p,extra\n", "line 3: expected 3 fields"),
            ("a,x.com,p\nb,bad domain,p\n", "line 2: invalid domain"),
            ("a,x.com,\n", "line 1: password must not be empty"),
            ('a,x.com,"p\n', "malformed CSV"),
        ):
            with open(path, "w", newline="") as f:
                f.write(content)
            self.assertIn(message, self.fails("subscriber", "import", path))
            # Validation happens before anything is written.
            self.assertEqual(self.rows(), {})
        with open(path, "wb") as f:
            f.write(b"a,x.com,\xff\n")
        self.assertIn("not UTF-8", self.fails("subscriber", "import", path))
        self.assertIn("cannot read", self.fails("subscriber", "import", path + ".missing"))

    def test_upgradePending(self) -> None:
        """A schema at an older version is refused until 'db upgrade'."""
        self.ok("db", "init")
        engine = create_engine(self.url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE schema_version SET version = 0 WHERE component = 'subscribers'"))
        engine.dispose()
        self.assertIn("db init", self.fails("subscriber", "list"))
        self.assertIn("not initialised", self.fails("db", "upgrade"))

    def test_badDatabase(self) -> None:
        status, out, err = self.admin("subscriber", "list", "--db", "foo://bar", db=False)
        self.assertEqual(status, 1)
        self.assertIn("unsupported database URL", err)
        status, out, err = self.admin("subscriber", "list", "--db", "not a url", db=False)
        self.assertIn("invalid database URL", err)
        port = mariadb.freePort()
        status, out, err = self.admin(
            "subscriber", "add", "a@b.c", "--password", "x", "--db", f"mysql+mysqldb://root@127.0.0.1:{port}/x", db=False
        )
        self.assertEqual(status, 1)
        self.assertIn("is unavailable", err)
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("unknown schema component", self.fails("db", "init", "--component", "nosuch"))


class SQLiteAdminTests(AdminTestsMixin, TestCase):
    def makeURL(self) -> str:
        return f"sqlite:///{os.path.abspath(self.mktemp())}/data/subscribers.sqlite"

    def test_defaultAndEnvironment(self) -> None:
        """--db defaults to $VOIPGW_SUBSCRIBERS_DB, else data/subscribers.sqlite in the cwd."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        cwd = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, cwd)
        old = os.environ.pop("VOIPGW_SUBSCRIBERS_DB", None)
        self.addCleanup(lambda: os.environ.__setitem__("VOIPGW_SUBSCRIBERS_DB", old) if old else None)
        self.assertEqual(self.admin("db", "init", db=False)[0], 0)
        self.assertTrue(os.path.exists(os.path.join(directory, "data", "subscribers.sqlite")))
        os.environ["VOIPGW_SUBSCRIBERS_DB"] = self.url
        self.addCleanup(os.environ.pop, "VOIPGW_SUBSCRIBERS_DB", None)
        self.assertEqual(self.admin("db", "init", db=False)[0], 0)
        self.assertEqual(self.admin("subscriber", "add", "a@b.c", "--password", "x", db=False)[0], 0)
        self.assertEqual(list(self.rows()), ["a@b.c"])

    def test_subprocess(self) -> None:
        """The real program: exit statuses and messages."""
        env = dict(os.environ, PYTHONPATH=ROOT, VOIPGW_SUBSCRIBERS_DB=self.url)
        program = [sys.executable, "-c", "import sys; from voipgw.admin.cli import main; sys.exit(main())"]

        def run(*argv: str) -> subprocess.CompletedProcess:
            return subprocess.run([*program, *argv], env=env, capture_output=True, text=True, timeout=60)

        self.assertEqual(run("db", "init").returncode, 0)
        self.assertEqual(run("subscriber", "add", "bob@example.com", "--password", "pw").returncode, 0)
        duplicate = run("subscriber", "add", "BOB@example.com", "--password", "pw")
        self.assertEqual(duplicate.returncode, 1)
        self.assertEqual(duplicate.stderr, "voipgw-admin: subscriber bob@example.com already exists\n")
        listing = run("subscriber", "list")
        self.assertEqual((listing.returncode, listing.stdout), (0, "bob@example.com\n"))
        usage = run("subscriber", "frobnicate")
        self.assertEqual(usage.returncode, 2)


class MariaDBAdminTests(AdminTestsMixin, TestCase):
    def makeURL(self) -> str:
        reason = mariadb.sharedServerReason()
        if reason:
            raise SkipTest(reason)
        url, name = mariadb.createScratchDatabase()
        self.addCleanup(mariadb.dropDatabase, name)
        return url


class SchemaTests(TestCase):
    def test_upgradeStepThroughCLI(self) -> None:
        """'db upgrade' applies a newer step of the subscribers component."""
        from voipgw.subscribers import schema

        url = f"sqlite:///{os.path.abspath(self.mktemp())}.sqlite"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(main(["db", "init", "--db", url]), 0)
        applied = []
        step = MigrationStep(2, "test step", lambda conn: applied.append(2))
        original = schema.MIGRATOR
        schema.MIGRATOR = Migrator("subscribers", [*original.steps, step])
        self.addCleanup(setattr, schema, "MIGRATOR", original)
        with contextlib.redirect_stdout(out):
            self.assertEqual(main(["db", "status", "--db", url]), 2)
            self.assertEqual(main(["db", "upgrade", "--db", url]), 0)
        self.assertEqual(applied, [2])
        self.assertIn("upgraded from version 1 to 2", out.getvalue())
