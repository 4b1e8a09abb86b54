"""
Real MariaDB servers for tests: private C{mariadbd} instances in temporary
directories on free loopback ports, with helpers to set up replication and to
kill or restart a server mid-test.

Tests that need only a database get a scratch database on one private
server per test process (L{createScratchDatabase}); anything that kills or
replicates starts its own servers.  The machine's MariaDB on 127.0.0.1:3306
is not used (MariaDB 10.11 crashed there once under two trial workers, and a
test must not depend on what else runs on the machine).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from typing import Optional

import MySQLdb

MARIADBD = shutil.which("mariadbd") or shutil.which("mysqld") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")


def freePort() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mariadbAvailable() -> Optional[str]:
    """C{None} if private servers can be started, else the reason why not."""
    if not os.path.exists(MARIADBD):
        return "mariadbd is not installed"
    if INSTALL_DB is None:
        return "mariadb-install-db is not installed"
    return None


_scratchServer: Optional["MariaDBServer"] = None


def _scratch() -> tuple[str, int]:
    """
    Host and port of the server scratch databases go to: one private
    C{mariadbd} per test process, started on first use and destroyed at
    exit, so tests never depend on (or disturb) the machine's server.  Set
    C{VOIPGW_TEST_MARIADB=host:port} to use an existing server instead.
    """
    global _scratchServer
    configured = os.environ.get("VOIPGW_TEST_MARIADB")
    if configured:
        host, _, port = configured.rpartition(":")
        return host or "127.0.0.1", int(port)
    if _scratchServer is None:
        server = MariaDBServer()
        try:
            server.start()
        except Exception:
            server.destroy()
            raise
        atexit.register(server.destroy)
        _scratchServer = server
    return "127.0.0.1", _scratchServer.port


def sharedServerReason() -> Optional[str]:
    """C{None} if scratch databases can be made (see L{_scratch}), else why not."""
    reason = mariadbAvailable() if not os.environ.get("VOIPGW_TEST_MARIADB") else None
    if reason is not None:
        return reason
    try:
        host, port = _scratch()
        MySQLdb.connect(host=host, port=port, user="root", passwd="", connect_timeout=2).close()
    except Exception as e:
        return f"no MariaDB for scratch databases: {e}"
    return None


def createScratchDatabase(host: Optional[str] = None, port: Optional[int] = None) -> tuple[str, str]:
    """
    Create an empty uniquely named database on the scratch server (or on
    C{host:port}).

    @return: (SQLAlchemy URL, database name); drop it with L{dropDatabase}.
    """
    if host is None or port is None:
        host, port = _scratch()
    name = "voipgw_test_" + uuid.uuid4().hex[:12]
    conn = MySQLdb.connect(host=host, port=port, user="root", passwd="", connect_timeout=5)
    try:
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    return f"mysql+mysqldb://root@{host}:{port}/{name}", name


def dropDatabase(name: str, host: Optional[str] = None, port: Optional[int] = None) -> None:
    if host is None or port is None:
        host, port = _scratch()
    try:
        conn = MySQLdb.connect(host=host, port=port, user="root", passwd="", connect_timeout=5)
    except Exception:
        return
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


class MariaDBServer:
    """
    One private C{mariadbd} in a temporary data directory.

    C{start()} initialises the data directory on first use and waits until
    the server accepts connections; C{kill()} sends SIGKILL (a crash),
    C{stop()} shuts down cleanly; both may be followed by C{start()} again,
    on the same port and data.
    """

    _serverIds = iter(range(100, 10_000))

    def __init__(self, baseDir: Optional[str] = None, database: str = "voipgw") -> None:
        self.dir = tempfile.mkdtemp(prefix="voipgw-mariadb-", dir=baseDir)
        self.datadir = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.port = freePort()
        self.serverId = next(self._serverIds)
        self.database = database
        self.process: Optional[subprocess.Popen] = None
        self._initialised = False

    @property
    def url(self) -> str:
        """SQLAlchemy URL of this server's test database."""
        return f"mysql+mysqldb://root@127.0.0.1:{self.port}/{self.database}"

    def connect(self, database: Optional[str] = None) -> "MySQLdb.Connection":
        kwargs = dict(host="127.0.0.1", port=self.port, user="root", passwd="", connect_timeout=2)
        if database:
            kwargs["db"] = database
        return MySQLdb.connect(**kwargs)

    def execute(self, *statements: str, database: Optional[str] = None) -> list:
        """Run statements as root; return the rows of the last one."""
        conn = self.connect(database)
        try:
            cursor = conn.cursor()
            rows: list = []
            for statement in statements:
                cursor.execute(statement)
                rows = list(cursor.fetchall()) if cursor.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    _initLock = threading.Lock()

    def _initialise(self) -> None:
        # mariadb-install-db's bootstrap occasionally crashes (a core dump in
        # its log), more often when several run at once: serialise them and
        # retry on a clean directory.
        with self._initLock:
            for attempt in range(3):
                shutil.rmtree(self.datadir, ignore_errors=True)
                os.makedirs(self.datadir, exist_ok=True)
                result = subprocess.run(
                    [INSTALL_DB, "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                     "--auth-root-authentication-method=normal", "--skip-test-db"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )
                if result.returncode == 0:
                    self._initialised = True
                    return
            raise RuntimeError(
                f"{INSTALL_DB} failed (status {result.returncode}): "
                + result.stderr.decode("utf-8", "replace")[-2000:]
            )

    def start(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        if not self._initialised:
            self._initialise()
        log = open(os.path.join(self.dir, "mariadbd.log"), "ab")
        self.process = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root",
             f"--pid-file={os.path.join(self.dir, 'mysqld.pid')}",
             f"--server-id={self.serverId}", "--log-bin=mysql-bin", "--binlog-format=ROW",
             "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
             "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=2",
             "--sync-binlog=0", "--max-connections=200", "--skip-grant-tables=0"],
            stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited early; see {self.dir}/mariadbd.log")
            try:
                self.connect().close()
                break
            except MySQLdb.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mariadbd did not start in {timeout}s")
                time.sleep(0.1)
        self.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}` CHARACTER SET utf8mb4")

    def kill(self) -> None:
        """Crash the server (SIGKILL) and wait for it to be gone."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Shut down cleanly."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections hang instead of failing."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.resume()
        except Exception:
            pass
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def replicateFrom(self, master: "MariaDBServer") -> None:
        """Make this server a replica of C{master} (GTID, from the start)."""
        self.execute(
            "STOP SLAVE",
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={master.port}, "
            "MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos, "
            "MASTER_CONNECT_RETRY=1",
            "START SLAVE",
        )

    def waitForReplication(self, master: "MariaDBServer", timeout: float = 20.0) -> None:
        """Block until this replica has applied everything C{master} wrote."""
        gtid = master.execute("SELECT @@gtid_binlog_pos")[0][0]
        rows = self.execute(f"SELECT MASTER_GTID_WAIT('{gtid}', {timeout})")
        if rows[0][0] != 0:
            raise RuntimeError(f"replica did not reach {gtid} within {timeout}s")
