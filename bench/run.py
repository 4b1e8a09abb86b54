#!/usr/bin/env python3
"""
voipgw against Kamailio 5.6, same scenarios, same machine, same run.

    python3 bench/run.py            # full run (a few minutes per server)
    python3 bench/run.py --quick    # smoke run: short rungs, coarse ladder

Installs what it needs (Debian: sip-tester, kamailio, kamailio-sqlite-modules)
when run as root, then for each server (a voipgw node with --workers N, and
Kamailio with children=4) on loopback:

  - options:  OPTIONS to the server, answered 200;
  - register: REGISTER, 401, REGISTER with digest credentials, 200, over
    50,000 distinct subscribers (sipp -inf);
  - call:     INVITE/100/180/200/ACK/BYE/200 through the record-routing
    stateful proxy to a sipp UAS registered as sip:callee@DOMAIN.

Each scenario climbs a rate ladder (each rung a fixed number of seconds)
until a rung is not clean: a failed call, or an achieved rate below 95% of
the target; then --refine rungs (default 2, --quick 1) bisect between the
last clean rung and the first unclean one, after --settle seconds of rest
(and, for calls, a fresh UAS).  Printed and written to
bench/results/run-TIMESTAMP.json: every rung tried (phase "ladder" or
"refine", with server and sipp CPU, the kernel's UDP receive-buffer drops,
the UAS's counters and sipp's errors by kind), the highest clean rate of
each server, the ratio voipgw/Kamailio, response-time percentiles at that
rate (sipp -trace_rtt) and voipgw's resident memory.  Each server gets its
own sipp UAS for the calls.  Every load is bounded in calls and time;
nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCENARIOS = os.path.join(HERE, "scenarios")
DOMAIN = "bench.example"
HOST = "127.0.0.1"
CALLEE = "callee"
CALLEE_PASSWORD = "callee-secret-pw"
SUBSCRIBERS = 50_000


# -- setup -------------------------------------------------------------------


def ensurePackages() -> None:
    needed = []
    if shutil.which("sipp") is None:
        needed.append("sip-tester")
    if shutil.which("kamailio") is None:
        needed.append("kamailio")
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so") and not any(
        os.path.exists(os.path.join(d, "db_sqlite.so")) for d in _kamailioModuleDirs()
    ):
        needed.append("kamailio-sqlite-modules")
    if not needed:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"bench: missing Debian packages {needed}; install them (apt-get install -y {' '.join(needed)})")
    print(f"installing {' '.join(needed)} ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "install", "-y", *needed], env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(["apt-get", "install", "-y", *needed], env=env, stdout=subprocess.DEVNULL, check=True)


def _kamailioModuleDirs() -> list[str]:
    return [d for d in ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules") if os.path.isdir(d)]


def freeUDPPort() -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind((HOST, port))
            except OSError:
                continue
        return int(port)
    raise RuntimeError("no free port")


def writeUsers(work: str, count: int) -> tuple[str, str, list[tuple[str, str]]]:
    """The subscribers: a sipp injection file and a voipgw import CSV."""
    users = [(f"u{i:06d}", f"pw-{i:06d}-{secrets.token_hex(4)}") for i in range(count)]
    users.append((CALLEE, CALLEE_PASSWORD))
    sippFile = os.path.join(work, "users.csv")
    with open(sippFile, "w") as f:
        f.write("SEQUENTIAL\n")
        for user, password in users[:count]:
            # sipp 3.6 does not expand [fieldN] inside [authentication ...]:
            # the whole keyword is the second field
            f.write(f"{user};[authentication username={user} password={password}];\n")
    importFile = os.path.join(work, "import.csv")
    with open(importFile, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["username", "domain", "password"])
        for user, password in users:
            writer.writerow([user, DOMAIN, password])
    return sippFile, importFile, users


# -- process helpers -----------------------------------------------------------


def rssKiB(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of C{pid} in KiB."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def cpuSeconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


class Server:
    name = ""
    port = 0
    proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        return []

    def memory(self) -> dict[str, int]:
        rss = [rssKiB(p) for p in self.pids()]
        return {"rss_kib": sum(r for r, _ in rss), "hwm_kib": sum(h for _, h in rss), "processes": len(rss)}

    def logOffset(self) -> int:
        """Where the server's log ends now (for L{logEvents})."""
        return 0

    def logEvents(self, offset: int) -> dict[str, Any]:
        """What the server logged since C{offset} that explains a rung (voipgw: GC pauses, overload)."""
        return {}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def buildVoipgw(work: str, pure: bool) -> tuple[Optional[str], str]:
    """
    Install the checkout as a carrier would (C{pip install .}, which compiles
    the SIP message layer with mypyc) into a private directory: returns that
    directory (for PYTHONPATH) and the build kind, C{"mypyc"} or
    C{"pure-python"}.  With C{pure}, the node runs from the checkout itself.
    """
    if pure:
        return None, "pure-python"
    target = os.path.join(work, "voipgw-build")
    print("  building voipgw (pip install --target, mypyc) ...", flush=True)
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
            "--root-user-action=ignore", "--target", target]
    try:
        # the build tools are already here (mypy is a test dependency): no download
        import mypy  # noqa: F401
        import mypy_zope  # noqa: F401
        import wheel  # noqa: F401

        argv.append("--no-build-isolation")
    except ImportError:
        pass
    started = time.monotonic()
    subprocess.run(argv + [ROOT], check=True, stdout=subprocess.DEVNULL)
    compiled = any(name.startswith("message.") and name.endswith(".so")
                   for name in os.listdir(os.path.join(target, "voipgw", "sip")))
    kind = "mypyc" if compiled else "pure-python"
    print(f"  built in {time.monotonic() - started:.0f} s: {kind}", flush=True)
    return target, kind


class VoipgwServer(Server):
    name = "voipgw"

    def __init__(self, work: str, importFile: str, workers: int, pure: bool = False) -> None:
        self.work = os.path.join(work, "voipgw")
        os.makedirs(self.work, exist_ok=True)
        self.importFile = importFile
        self.workers = workers
        self.port = freeUDPPort()
        self.workerPids: list[int] = []
        self.pythonPath, self.build = buildVoipgw(self.work, pure)

    def start(self) -> None:
        data = os.path.join(self.work, "data")
        os.makedirs(data, exist_ok=True)
        db = os.path.join(data, "subscribers.sqlite")
        if not os.path.exists(db):
            print(f"  importing {SUBSCRIBERS + 1} subscribers into voipgw ...", flush=True)
            subprocess.run([sys.executable, "-m", "voipgw.admin", "db", "init", "--db", f"sqlite:///{db}"],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            subprocess.run(
                [sys.executable, "-m", "voipgw.admin", "subscriber", "import", self.importFile, "--quiet", "--db", f"sqlite:///{db}"],
                cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
            )
        ini = os.path.join(self.work, "voipgw.ini")
        with open(ini, "w") as f:
            f.write(
                f"[node]\nlisten = udp:{HOST}:{self.port}\ndomain = {DOMAIN}\ndata_dir = {data}\n"
                f"workers = {self.workers}\n\n"
                "[auth]\nalgorithms = MD5\nmax_failures = 0\n\n"
                "[subscribers]\ncache_ttl = 3600\ncache_size = 100000\npreload = yes\n\n"
                "[location]\nbackend = memory\n\n"
                # as the Kamailio config: callers on loopback are not challenged
                f"[routing]\ntrusted = 127.0.0.0/8\n"
            )
        log = open(os.path.join(self.work, "pool.log"), "a")
        env = dict(os.environ)
        if self.pythonPath is not None:
            # the built copy, not the checkout: run outside ROOT
            env["PYTHONPATH"] = self.pythonPath
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voipgw.workers", "--config", ini, "--workers", str(self.workers),
             "--run-dir", os.path.join(self.work, "run"), "--log-level", "warn"],
            cwd=ROOT if self.pythonPath is None else self.work, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
        )
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"voipgw exited at start; see {log.name}")
            if line.startswith("READY"):
                self.workerPids = [int(p) for p in line.split()[1:]]
                return
        raise RuntimeError("voipgw did not start within 60 s")

    def pids(self) -> list[int]:
        return list(self.workerPids)

    def logOffset(self) -> int:
        path = os.path.join(self.work, "pool.log")
        return os.path.getsize(path) if os.path.exists(path) else 0

    def logEvents(self, offset: int) -> dict[str, Any]:
        """Garbage-collection pauses of 100 ms or more, overload episodes and stale drops logged since C{offset}."""
        path = os.path.join(self.work, "pool.log")
        if not os.path.exists(path):
            return {}
        with open(path, errors="replace") as f:
            f.seek(offset)
            text = f.read()
        pauses = [float(m) for m in re.findall(r"paused the worker (\d+) ms", text)]
        return {
            "gc_pauses_over_100ms": len(pauses), "gc_pause_max_ms": max(pauses, default=0.0),
            "overload_episodes": text.count("answering part of the new requests 503"),
            "stale_drop_lines": text.count("in the receive queue (overload"),
            "send_error_lines": text.count("cannot send"),
        }


class KamailioServer(Server):
    name = "kamailio"

    def __init__(self, work: str, users: list[tuple[str, str]]) -> None:
        self.work = os.path.join(work, "kamailio")
        os.makedirs(self.work, exist_ok=True)
        self.users = users
        self.port = freeUDPPort()

    def start(self) -> None:
        db = os.path.join(self.work, "subscribers.sqlite")
        if not os.path.exists(db):
            conn = sqlite3.connect(db)
            conn.executescript(
                "CREATE TABLE version (table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL);"
                "INSERT INTO version VALUES ('subscriber', 7);"
                "CREATE TABLE subscriber (id INTEGER PRIMARY KEY NOT NULL, username VARCHAR(64) DEFAULT '' NOT NULL,"
                " domain VARCHAR(64) DEFAULT '' NOT NULL, password VARCHAR(64) DEFAULT '' NOT NULL,"
                " ha1 VARCHAR(128) DEFAULT '' NOT NULL, ha1b VARCHAR(128) DEFAULT '' NOT NULL);"
                "CREATE UNIQUE INDEX account_idx ON subscriber (username, domain);"
            )
            conn.executemany(
                "INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)",
                [(u, DOMAIN, p) for u, p in self.users],
            )
            conn.commit()
            conn.close()
        with open(os.path.join(HERE, "kamailio", "kamailio.cfg")) as f:
            text = f.read()
        cfg = os.path.join(self.work, "kamailio.cfg")
        with open(cfg, "w") as f:
            f.write(text.replace("@DBURL@", f"sqlite://{db}").replace("@DOMAIN@", DOMAIN))
        pidfile = os.path.join(self.work, "kamailio.pid")
        log = open(os.path.join(self.work, "kamailio.log"), "a")
        check = subprocess.run(["kamailio", "-c", "-f", cfg], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"kamailio config check failed:\n{check.stderr[-2000:]}")
        self.proc = subprocess.Popen(
            ["kamailio", "-f", cfg, "-DD", "-E", "-l", f"udp:{HOST}:{self.port}", "-m", "2048", "-M", "16",
             "-P", pidfile, "-Y", self.work],
            stdout=log, stderr=log,
        )
        waitForOptions(self.port, 20)

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [self.proc.pid] + [int(p) for p in out.split()]


class Uas:
    """The called party of the call scenario: a sipp UAS on its own UDP port."""

    def __init__(self, work: str, name: str) -> None:
        self.dir = os.path.join(work, f"uas-{name}")
        os.makedirs(self.dir, exist_ok=True)
        self.port = freeUDPPort()
        self.stat = os.path.join(self.dir, "stat.csv")
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        if os.path.exists(self.stat):
            os.remove(self.stat)  # counters() must not read an earlier process's figures
        self.proc = subprocess.Popen(
            ["sipp", "-sf", os.path.join(SCENARIOS, "uas.xml"), "-i", HOST, "-p", str(self.port), "-t", "u1",
             "-nostdin", "-nd", "-timeout", "7200s", "-max_recv_loops", "5000", "-buff_size", str(SIPP_SOCKET_BUFFER),
             "-trace_err", "-trace_stat", "-stf", self.stat, "-fd", "1"],
            cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def counters(self) -> dict[str, int]:
        """Cumulative counters from the UAS's statistics file (written every second)."""
        try:
            with open(self.stat, newline="") as f:
                rows = list(csv.reader(f, delimiter=";"))
        except OSError:
            return {}
        if len(rows) < 2:
            return {}
        row = dict(zip(rows[0], rows[-1]))
        names = {"calls": "IncomingCall(C)", "successful": "SuccessfulCall(C)", "failed": "FailedCall(C)",
                 "max_udp_retrans": "FailedMaxUDPRetrans(C)", "unexpected": "FailedUnexpectedMessage(C)",
                 "recv_timeout": "FailedTimeoutOnRecv(C)", "retransmissions": "Retransmissions(C)",
                 "dead_call_msgs": "DeadCallMsgs(C)", "out_of_call_msgs": "OutOfCallMsgs(C)"}
        return {key: int(row.get(column, "0") or 0) for key, column in names.items()}

    def errorOffsets(self) -> dict[str, int]:
        return {name: os.path.getsize(os.path.join(self.dir, name))
                for name in os.listdir(self.dir) if name.endswith("_errors.log")}

    def restart(self) -> None:
        """A fresh UAS on the same port (the registered contact): no calls left from an earlier rung."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


# -- SIP helpers (setup only: not load) ------------------------------------------


def sipTransaction(port: int, message: str, timeout: float = 2.0) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        s.settimeout(timeout)
        local = s.getsockname()[1]
        s.sendto(message.replace("LOCALPORT", str(local)).encode(), (HOST, port))
        while True:
            data = s.recv(65535).decode("utf-8", "replace")
            if not data.startswith("SIP/2.0 1"):
                return data


def waitForOptions(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            reply = sipTransaction(port, (
                f"OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:LOCALPORT;branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:probe@{DOMAIN}>;tag=1\r\nTo: <sip:{DOMAIN}>\r\n"
                f"Call-ID: {secrets.token_hex(8)}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"), 0.5)
            if reply.startswith("SIP/2.0 200"):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no 200 to OPTIONS on port {port}")


def registerContact(port: int, user: str, password: str, contactPort: int) -> None:
    """REGISTER sip:user@DOMAIN with digest auth, Contact on contactPort (the UAS)."""
    callId = secrets.token_hex(8)

    def request(cseq: int, auth: str = "") -> str:
        return (
            f"REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:LOCALPORT;branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{user}@{DOMAIN}>;tag=r1\r\nTo: <sip:{user}@{DOMAIN}>\r\n"
            f"Call-ID: {callId}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{HOST}:{contactPort}>\r\n"
            f"Expires: 3600\r\n{auth}Content-Length: 0\r\n\r\n"
        )

    reply = sipTransaction(port, request(1))
    if not reply.startswith("SIP/2.0 401"):
        raise RuntimeError(f"REGISTER: expected 401, got {reply.splitlines()[0]}")
    challenge = next(l for l in reply.split("\r\n") if l.lower().startswith("www-authenticate:") and "MD5" in l.upper() or "algorithm" not in l.lower() and l.lower().startswith("www-authenticate:"))
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(":", 1)[1].strip()[len("Digest"):]))
    realm, nonce = params["realm"], params["nonce"]
    uri = f"sip:{DOMAIN}"
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
    if "qop" in params:
        cnonce, nc = secrets.token_hex(4), "00000001"
        response = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        extra = f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        extra = ""
    opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
    auth = (f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5{extra}{opaque}\r\n')
    reply = sipTransaction(port, request(2, auth))
    if not reply.startswith("SIP/2.0 200"):
        raise RuntimeError(f"REGISTER with credentials: got {reply.splitlines()[0]}")


# -- UDP counters --------------------------------------------------------------------


def udpCounters(ports: list[int]) -> dict[str, int]:
    """The kernel's UDP receive-buffer drops: all sockets (RcvbufErrors) and per local port."""
    counters = {"rcvbuf_errors": 0}
    try:
        with open("/proc/net/snmp") as f:
            lines = [l.split() for l in f if l.startswith("Udp:")]
        counters["rcvbuf_errors"] = int(dict(zip(lines[0][1:], lines[1][1:])).get("RcvbufErrors", 0))
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                fields = line.split()
                port = int(fields[1].split(":")[1], 16)
                if port in ports:
                    counters[str(port)] = counters.get(str(port), 0) + int(fields[-1])
    except (OSError, IndexError, ValueError, StopIteration):
        pass
    return counters


# -- sipp ----------------------------------------------------------------------------


def parseElapsed(text: str) -> float:
    # sipp writes HH:MM:SS:uuuuuu (or with '.' before the fraction)
    parts = re.split(r"[:.]", text.strip())
    h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
    frac = float("0." + parts[3]) if len(parts) > 3 else 0.0
    return h * 3600 + m * 60 + s + frac


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)

    def at(p: float) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))], 3)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": round(values[-1], 3)}


SIPP_TRANSPORT = "un"
# SO_RCVBUF/SO_SNDBUF of sipp's sockets (sipp's default is 64 KiB): the load generator must not drop
# what the server sends in a burst (the UAS takes every call of a rung on one socket)
SIPP_SOCKET_BUFFER = 4 << 20


def sippErrors(directory: str, limit: int = 8, offsets: Optional[dict[str, int]] = None) -> dict[str, int]:
    """sipp's -trace_err logs in C{directory} (from C{offsets}, bytes per file), counted by kind:
    the first line of each error with numbers blanked."""
    counts: dict[str, int] = {}
    for name in os.listdir(directory):
        if not name.endswith("_errors.log"):
            continue
        with open(os.path.join(directory, name), errors="replace") as f:
            f.seek((offsets or {}).get(name, 0))
            for line in f:
                # sipp 3.6 starts each error with a timestamp; continuation lines are the message
                for entry in re.split(r"'?\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ", line)[1:]:
                    kind = re.sub(r"\d+", "N", entry.strip())[:160]
                    counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:limit])


#: Scenarios that open no dialog: sipp runs them without its default
#: abort behaviour (-nd).
NO_DIALOG_SCENARIOS = frozenset({"register", "options"})


def runSipp(scenario: str, server: Server, rate: int, seconds: float, work: str, keys: dict[str, str],
            inf: Optional[str] = None, uas: Optional[Uas] = None) -> dict[str, Any]:
    calls = max(1, int(rate * seconds))
    rungDir = tempfile.mkdtemp(prefix=f"{server.name}-{scenario}-{rate}-", dir=work)
    stat = os.path.join(rungDir, "stat.csv")
    # -t un: a socket per open call; sipp wants sockets + open calls below the open-file limit
    openCalls = max(100, rate * 4)
    maxSockets = max(1024, min(15000, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - openCalls - 100))
    argv = [
        "sipp", f"{HOST}:{server.port}", "-sf", os.path.join(SCENARIOS, f"{scenario}.xml"),
        "-i", HOST, "-p", str(freeUDPPort()), "-t", SIPP_TRANSPORT, "-max_socket", str(maxSockets),
        "-r", str(rate), "-rp", "1000", "-m", str(calls), "-l", str(openCalls), "-buff_size", str(SIPP_SOCKET_BUFFER),
        "-nostdin", "-trace_stat", "-stf", stat, "-fd", "1", "-trace_err",
        "-trace_rtt", "-rtt_freq", "1", "-recv_timeout", "8000",
        "-timeout", f"{int(seconds * 2 + 30)}s", "-timeout_error",
        "-max_sched_loops", "5000", "-max_recv_loops", "5000",
    ]
    if scenario in NO_DIALOG_SCENARIOS:
        # sipp's default on giving up a "call" is to send BYE (or CANCEL):
        # for a REGISTER or an OPTIONS no device does that, and the server
        # would route each such BYE to the registered contact (a dead
        # sipp call) and retransmit it for 32 s -- load that only an
        # overloaded rung creates, on the server that overloads first
        argv.append("-nd")
    for key, value in keys.items():
        argv += [key, value] if key.startswith("-") else ["-key", key, value]
    if inf:
        argv += ["-inf", inf]
    ports = [server.port] + ([uas.port] if uas else [])
    udpBefore = udpCounters(ports)
    uasBefore = uas.counters() if uas else {}
    uasErrorOffsets = uas.errorOffsets() if uas else {}
    cpuBefore = {pid: cpuSeconds(pid) for pid in server.pids()}
    uasCpuBefore = cpuSeconds(uas.proc.pid) if uas and uas.proc else 0.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=rungDir, capture_output=True, text=True, timeout=seconds * 3 + 60)
    wall = time.monotonic() - started
    cpu = sum(cpuSeconds(pid) - before for pid, before in cpuBefore.items())
    childrenAfter = resource.getrusage(resource.RUSAGE_CHILDREN)
    sippCpu = {"uac": round(childrenAfter.ru_utime + childrenAfter.ru_stime - children.ru_utime - children.ru_stime, 2)}
    if uas and uas.proc:
        sippCpu["uas"] = round(cpuSeconds(uas.proc.pid) - uasCpuBefore, 2)
    udpAfter = udpCounters(ports)
    udpDrops = {"all_sockets": udpAfter["rcvbuf_errors"] - udpBefore["rcvbuf_errors"],
                "server": udpAfter.get(str(server.port), 0) - udpBefore.get(str(server.port), 0)}
    uasDelta: dict[str, int] = {}
    uasErrors: dict[str, int] = {}
    if uas:
        udpDrops["uas"] = udpAfter.get(str(uas.port), 0) - udpBefore.get(str(uas.port), 0)
        time.sleep(1.2)  # the UAS writes its statistics every second
        uasAfter = uas.counters()
        uasDelta = {key: uasAfter.get(key, 0) - uasBefore.get(key, 0) for key in uasAfter}
        uasErrors = sippErrors(uas.dir, offsets=uasErrorOffsets)
    row: dict[str, str] = {}
    if os.path.exists(stat):
        with open(stat, newline="") as f:
            rows = list(csv.reader(f, delimiter=";"))
        if len(rows) >= 2:
            row = dict(zip(rows[0], rows[-1]))
    successful = int(row.get("SuccessfulCall(C)", "0") or 0)
    failed = int(row.get("FailedCall(C)", "0") or 0)
    retrans = int(row.get("Retransmissions(C)", "0") or 0)
    elapsed = parseElapsed(row["ElapsedTime(C)"]) if row.get("ElapsedTime(C)") else wall
    rtts: dict[str, list[float]] = {}
    for name in os.listdir(rungDir):
        if name.endswith("_rtt.csv"):
            with open(os.path.join(rungDir, name)) as f:
                for line in f:
                    fields = line.strip().split(";")
                    if len(fields) >= 3 and fields[1].replace(".", "", 1).isdigit():
                        rtts.setdefault(fields[2], []).append(float(fields[1]))
    achieved = successful / elapsed if elapsed > 0 else 0.0
    clean = failed == 0 and successful == calls and achieved >= 0.95 * rate and proc.returncode == 0
    result = {
        "target_rate": rate, "calls": calls, "successful": successful, "failed": failed,
        "retransmissions": retrans, "elapsed_s": round(elapsed, 2), "achieved_rate": round(achieved, 1),
        "clean": clean, "sipp_exit": proc.returncode, "server_cpu_s": round(cpu, 2), "sipp_cpu_s": sippCpu,
        "udp_drops": udpDrops, "uac_errors": sippErrors(rungDir),
        "rtt": {f"rtd{k}": percentiles(v) for k, v in sorted(rtts.items())},
    }
    if uas:
        result["uas"] = uasDelta
        result["uas_errors"] = uasErrors
    if not clean:
        result["rung_dir"] = rungDir
        with open(os.path.join(rungDir, "sipp.out"), "w") as f:
            f.write(proc.stdout[-20000:] + "\n--- stderr ---\n" + proc.stderr[-20000:])
    else:
        shutil.rmtree(rungDir, ignore_errors=True)
    return result


def roundRate(rate: float) -> int:
    return int(round(rate / 10.0) * 10) if rate >= 100 else max(1, int(rate))


def ladder(scenario: str, server: Server, rates: list[int], seconds: float, work: str, keys: dict[str, str],
           inf: Optional[str] = None, uas: Optional[Uas] = None, refine: int = 2,
           settle: float = 5.0) -> dict[str, Any]:
    """Climb C{rates} until a rung is not clean, then bisect C{refine} times between the
    last clean rung (or 0) and the first unclean one.  Every rung tried is in "rungs"."""
    rungs: list[dict[str, Any]] = []

    def rung(rate: int, phase: str) -> bool:
        offset = server.logOffset()
        result = runSipp(scenario, server, rate, seconds, work, keys, inf, uas)
        result["phase"] = phase
        result["server_log"] = server.logEvents(offset)
        result["memory"] = server.memory()
        rungs.append(result)
        rtt = result["rtt"].get("rtd1", {})
        print(f"  {server.name:8} {scenario:8} {rate:6}/s -> {result['achieved_rate']:8.1f}/s "
              f"ok={result['successful']} failed={result['failed']} retrans={result['retransmissions']} "
              f"p50={rtt.get('p50_ms', '-')}ms p99={rtt.get('p99_ms', '-')}ms "
              f"cpu={result['server_cpu_s']}s drops={result['udp_drops']} sipp_cpu={result['sipp_cpu_s']} "
              f"{'clean' if result['clean'] else 'NOT CLEAN'}{' (refine)' if phase == 'refine' else ''}", flush=True)
        events = {k: v for k, v in result["server_log"].items() if v}
        if events:
            print(f"      server log: {events}", flush=True)
        if result["clean"]:
            time.sleep(1.0)  # let retransmission timers and transactions drain
            return True
        for side in ("uac_errors", "uas_errors"):
            for kind, count in list(result.get(side, {}).items())[:4]:
                print(f"      {side[:3]} {count:6} x {kind[:120]}", flush=True)
        # an overloaded rung leaves transactions, retransmissions and half-open
        # calls behind: let the server recover and give the next rung a fresh UAS
        time.sleep(settle)
        if uas:
            uas.restart()
        return False

    low, high = 0, 0
    for rate in rates:
        if not rung(rate, "ladder"):
            high = rate
            break
        low = rate
    for _ in range(refine if high else 0):
        rate = roundRate((low + high) / 2)
        if rate <= low or rate >= high:
            break
        if rung(rate, "refine"):
            low = rate
        else:
            high = rate
    best = next((r for r in rungs if r["clean"] and r["target_rate"] == low), None)
    return {"max_clean_rate": low, "first_unclean_rate": high or None, "at_max": best, "rungs": rungs}


def rateLadder(start: int, factor: float, limit: int) -> list[int]:
    rates: list[int] = []
    rate = float(start)
    while rate <= limit:
        value = roundRate(rate)
        if not rates or value > rates[-1]:
            rates.append(value)
        rate *= factor
    return rates


def machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()[:10]
    versions = {}
    for tool, argv in (("kamailio", ["kamailio", "-v"]), ("sipp", ["sipp", "-v"])):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            versions[tool] = (out.stdout + out.stderr).strip().splitlines()[0:2]
        except (OSError, subprocess.TimeoutExpired):
            versions[tool] = []
    return {
        "nproc": os.cpu_count(), "lscpu": lscpu, "kernel": platform.release(), "python": sys.version.split()[0],
        "versions": versions,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="voipgw vs Kamailio on loopback (sipp rate ladders)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s rungs, coarse ladder")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per rung (default 10, quick 3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="voipgw worker processes")
    parser.add_argument("--scenarios", default="options,register,call", help="comma-separated subset")
    parser.add_argument("--servers", default="voipgw,kamailio", help="comma-separated subset")
    parser.add_argument("--start", type=int, default=None, help="first rung (calls/s)")
    parser.add_argument("--factor", type=float, default=None, help="rate ratio between rungs")
    parser.add_argument("--max-rate", type=int, default=20000, help="highest rung (calls/s)")
    parser.add_argument("--refine", type=int, default=None,
                        help="bisection rungs between the last clean and the first unclean rung (default 2, quick 1)")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds of rest after an unclean rung (default 5, quick 3)")
    parser.add_argument("--pure-python", action="store_true",
                        help="run voipgw from the checkout as pure Python (default: pip-built, mypyc-compiled)")
    parser.add_argument("--sipp-transport", default="un", choices=["un", "u1"],
                        help="sipp UDP mode: un = one socket per call (many devices, the default), "
                             "u1 = one socket for all (a single trunk peer)")
    options = parser.parse_args(argv)
    seconds = options.seconds or (3.0 if options.quick else 10.0)
    factor = options.factor or (2.0 if options.quick else 1.3)
    start = options.start or (200 if options.quick else 200)
    rates = rateLadder(start, factor, options.max_rate)
    refine = options.refine if options.refine is not None else (1 if options.quick else 2)
    settle = options.settle if options.settle is not None else (3.0 if options.quick else 5.0)
    scenarios = [s.strip() for s in options.scenarios.split(",") if s.strip()]
    serverNames = [s.strip() for s in options.servers.split(",") if s.strip()]

    global SIPP_TRANSPORT
    SIPP_TRANSPORT = options.sipp_transport
    # a TERM (or ^C) unwinds through the finally blocks that stop the servers
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    ensurePackages()
    work = tempfile.mkdtemp(prefix="voipgw-bench-")
    print(f"work directory {work}; rungs of {seconds:g} s: {rates}", flush=True)
    sippUsers, importFile, users = writeUsers(work, SUBSCRIBERS)
    results: dict[str, Any] = {"machine": machine(), "seconds_per_rung": seconds, "rates": rates,
                               "refine_steps": refine, "settle_s": settle, "sipp_transport": SIPP_TRANSPORT,
                               "sipp_socket_buffer": SIPP_SOCKET_BUFFER,
                               "workers": options.workers, "subscribers": SUBSCRIBERS, "servers": {}}
    for name in serverNames:
        server: Server = (VoipgwServer(work, importFile, options.workers, options.pure_python)
                          if name == "voipgw" else KamailioServer(work, users))
        print(f"starting {name} on udp:{HOST}:{server.port}", flush=True)
        server.start()
        serverResults: dict[str, Any] = {"memory_idle": server.memory()}
        if isinstance(server, VoipgwServer):
            serverResults["build"] = server.build
        # each server gets its own UAS: nothing left by one server's last rungs reaches the next
        uas: Optional[Uas] = None
        try:
            for scenario in scenarios:
                keys = {"domain": DOMAIN}
                inf = None
                if scenario == "register":
                    inf = sippUsers
                    # the digest uri is the Request-URI (sipp's default is
                    # remote_ip:port, which a strict server rejects: RFC 3261 §22.4)
                    keys["-auth_uri"] = DOMAIN
                elif scenario == "call":
                    uas = Uas(work, name)
                    uas.start()
                    registerContact(server.port, CALLEE, CALLEE_PASSWORD, uas.port)
                    keys["-s"] = CALLEE
                serverResults[scenario] = ladder(scenario, server, rates, seconds, work, keys, inf,
                                                 uas if scenario == "call" else None, refine, settle)
                if uas:
                    uas.stop()
                    uas = None
                # the next scenario must not inherit this one's top rung: a
                # node's overload guard may still be shedding (it recovers
                # within about 2 s of the load dropping), queues draining
                time.sleep(settle)
            serverResults["memory_end"] = server.memory()
        finally:
            if uas:
                uas.stop()
            server.stop()
        results["servers"][name] = serverResults

    summary = {}
    print("\nscenario   voipgw max clean   kamailio max clean   ratio   voipgw p50/p99 at max    voipgw RSS")
    for scenario in scenarios:
        v = results["servers"].get("voipgw", {}).get(scenario, {})
        k = results["servers"].get("kamailio", {}).get(scenario, {})
        vr, kr = v.get("max_clean_rate", 0), k.get("max_clean_rate", 0)
        ratio = round(vr / kr, 3) if kr else None
        at = (v.get("at_max") or {})
        rtt = at.get("rtt", {}).get("rtd1", {})
        mem = at.get("memory", {}).get("rss_kib", 0)
        summary[scenario] = {"voipgw": vr, "kamailio": kr, "ratio": ratio}
        print(f"{scenario:10} {vr:14}/s {kr:18}/s {str(ratio):>7}   {rtt.get('p50_ms', '-')}/{rtt.get('p99_ms', '-')} ms"
              f"{'':10} {mem / 1024:.0f} MiB")
    results["summary"] = summary
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = os.path.join(HERE, "results", f"run-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if options.quick else ''}.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
