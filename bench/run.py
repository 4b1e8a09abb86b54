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
the target.  Printed and written to bench/results/run-TIMESTAMP.json: the
highest clean rate of each server, the ratio voipgw/Kamailio, response-time
percentiles at that rate (sipp -trace_rtt) and voipgw's resident memory.
Every load is bounded in calls and time; nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import re
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

    def pids(self) -> list[int]:
        return []

    def memory(self) -> dict[str, int]:
        rss = [rssKiB(p) for p in self.pids()]
        return {"rss_kib": sum(r for r, _ in rss), "hwm_kib": sum(h for _, h in rss), "processes": len(rss)}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class VoipgwServer(Server):
    name = "voipgw"

    def __init__(self, work: str, importFile: str, workers: int) -> None:
        self.work = os.path.join(work, "voipgw")
        os.makedirs(self.work, exist_ok=True)
        self.importFile = importFile
        self.workers = workers
        self.port = freeUDPPort()
        self.workerPids: list[int] = []

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
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voipgw.workers", "--config", ini, "--workers", str(self.workers),
             "--run-dir", os.path.join(self.work, "run"), "--log-level", "warn"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
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
            ["kamailio", "-f", cfg, "-DD", "-E", "-l", f"udp:{HOST}:{self.port}", "-m", "512", "-M", "16",
             "-P", pidfile, "-Y", self.work],
            stdout=log, stderr=log,
        )
        waitForOptions(self.port, 20)

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [self.proc.pid] + [int(p) for p in out.split()]


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


def runSipp(scenario: str, server: Server, rate: int, seconds: float, work: str, keys: dict[str, str],
            inf: Optional[str] = None) -> dict[str, Any]:
    calls = max(1, int(rate * seconds))
    rungDir = tempfile.mkdtemp(prefix=f"{server.name}-{scenario}-{rate}-", dir=work)
    stat = os.path.join(rungDir, "stat.csv")
    argv = [
        "sipp", f"{HOST}:{server.port}", "-sf", os.path.join(SCENARIOS, f"{scenario}.xml"),
        "-i", HOST, "-p", str(freeUDPPort()), "-t", SIPP_TRANSPORT, "-max_socket", "15000",
        "-r", str(rate), "-rp", "1000", "-m", str(calls), "-l", str(max(100, rate * 4)),
        "-nostdin", "-trace_stat", "-stf", stat, "-fd", "1",
        "-trace_rtt", "-rtt_freq", "1", "-recv_timeout", "8000",
        "-timeout", f"{int(seconds * 2 + 30)}s", "-timeout_error",
        "-max_sched_loops", "5000", "-max_recv_loops", "5000",
    ]
    for key, value in keys.items():
        argv += [key, value] if key.startswith("-") else ["-key", key, value]
    if inf:
        argv += ["-inf", inf]
    cpuBefore = {pid: cpuSeconds(pid) for pid in server.pids()}
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=rungDir, capture_output=True, text=True, timeout=seconds * 3 + 60)
    wall = time.monotonic() - started
    cpu = sum(cpuSeconds(pid) - before for pid, before in cpuBefore.items())
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
        "clean": clean, "sipp_exit": proc.returncode, "server_cpu_s": round(cpu, 2),
        "rtt": {f"rtd{k}": percentiles(v) for k, v in sorted(rtts.items())},
    }
    if not clean:
        result["rung_dir"] = rungDir
        with open(os.path.join(rungDir, "sipp.out"), "w") as f:
            f.write(proc.stdout[-20000:] + "\n--- stderr ---\n" + proc.stderr[-20000:])
    else:
        shutil.rmtree(rungDir, ignore_errors=True)
    return result


def ladder(scenario: str, server: Server, rates: list[int], seconds: float, work: str, keys: dict[str, str],
           inf: Optional[str] = None) -> dict[str, Any]:
    rungs = []
    best: Optional[dict[str, Any]] = None
    for rate in rates:
        result = runSipp(scenario, server, rate, seconds, work, keys, inf)
        result["memory"] = server.memory()
        rungs.append(result)
        rtt = result["rtt"].get("rtd1", {})
        print(f"  {server.name:8} {scenario:8} {rate:6}/s -> {result['achieved_rate']:8.1f}/s "
              f"ok={result['successful']} failed={result['failed']} retrans={result['retransmissions']} "
              f"p50={rtt.get('p50_ms', '-')}ms p99={rtt.get('p99_ms', '-')}ms "
              f"cpu={result['server_cpu_s']}s {'clean' if result['clean'] else 'NOT CLEAN'}", flush=True)
        if not result["clean"]:
            break
        best = result
        time.sleep(1.0)  # let retransmission timers and transactions drain
    return {"max_clean_rate": best["target_rate"] if best else 0, "at_max": best, "rungs": rungs}


def rateLadder(start: int, factor: float, limit: int) -> list[int]:
    rates, rate = [], float(start)
    while rate <= limit:
        value = int(round(rate / 10.0) * 10) if rate >= 100 else int(rate)
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
    parser.add_argument("--sipp-transport", default="un", choices=["un", "u1"],
                        help="sipp UDP mode: un = one socket per call (many devices, the default), "
                             "u1 = one socket for all (a single trunk peer)")
    options = parser.parse_args(argv)
    seconds = options.seconds or (3.0 if options.quick else 10.0)
    factor = options.factor or (2.0 if options.quick else 1.3)
    start = options.start or (200 if options.quick else 200)
    rates = rateLadder(start, factor, options.max_rate)
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
    uasPort = freeUDPPort()
    uasDir = os.path.join(work, "uas")
    os.makedirs(uasDir)
    uas = subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, "uas.xml"), "-i", HOST, "-p", str(uasPort), "-t", "u1",
         "-nostdin", "-bg" if False else "-nd", "-timeout", "7200s", "-max_recv_loops", "5000"],
        cwd=uasDir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    results: dict[str, Any] = {"machine": machine(), "seconds_per_rung": seconds, "rates": rates,
                               "sipp_transport": SIPP_TRANSPORT,
                               "workers": options.workers, "subscribers": SUBSCRIBERS, "servers": {}}
    try:
        for name in serverNames:
            server: Server = VoipgwServer(work, importFile, options.workers) if name == "voipgw" else KamailioServer(work, users)
            print(f"starting {name} on udp:{HOST}:{server.port}", flush=True)
            server.start()
            serverResults: dict[str, Any] = {"memory_idle": server.memory()}
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
                        registerContact(server.port, CALLEE, CALLEE_PASSWORD, uasPort)
                        keys["-s"] = CALLEE
                    serverResults[scenario] = ladder(scenario, server, rates, seconds, work, keys, inf)
                serverResults["memory_end"] = server.memory()
            finally:
                server.stop()
            results["servers"][name] = serverResults
    finally:
        if uas.poll() is None:
            uas.terminate()
            try:
                uas.wait(10)
            except subprocess.TimeoutExpired:
                uas.kill()

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
