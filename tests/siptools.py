"""
Real SIP peers for tests: sipp scenarios, sipsak, and stunnel to carry
sipp's TCP over TLS (Debian's sipp is built without TLS).  Every tool runs
as a child process of the reactor, so a node under test in the same
reactor keeps serving while the tool runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from typing import Optional, Sequence

from twisted.internet import defer, error, protocol, reactor as globalReactor
from twisted.internet.task import deferLater

SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")


def toolMissing(name: str) -> Optional[str]:
    """C{None} if the program C{name} is installed, else a skip reason."""
    return None if shutil.which(name) else f"{name} is not installed (.ci/run installs it)"


def freePort(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class ToolResult:
    exitCode: int
    stdout: str
    stderr: str
    files: dict[str, str]

    def describe(self) -> str:
        text = f"exit {self.exitCode}\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"
        for name, content in self.files.items():
            text += f"\n--- {name}:\n{content[-4000:]}"
        return text


class _Collector(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.done: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason) -> None:  # type: ignore[no-untyped-def]
        code = reason.value.exitCode if reason.check(error.ProcessTerminated) else 0
        if code is None:
            code = -(reason.value.signal or 1)
        self.done.callback(code)


async def runTool(argv: Sequence[str], cwd: Optional[str] = None, timeout: float = 60.0, reactor=globalReactor) -> ToolResult:  # type: ignore[no-untyped-def]
    """Run C{argv} without blocking the reactor; kill it after C{timeout}."""
    collector = _Collector()
    process = reactor.spawnProcess(collector, argv[0], list(argv), env=dict(os.environ), path=cwd)

    def kill() -> None:
        try:
            process.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass

    killer = reactor.callLater(timeout, kill)
    code = await collector.done
    if killer.active():
        killer.cancel()
    files = {}
    if cwd:
        for name in sorted(os.listdir(cwd)):
            if name.endswith((".log", ".csv")):
                with open(os.path.join(cwd, name), errors="replace") as f:
                    files[name] = f.read()
    return ToolResult(code, b"".join(collector.out).decode(errors="replace"), b"".join(collector.err).decode(errors="replace"), files)


async def runSipp(
    scenario: str,
    target: str,
    transport: str = "u1",
    calls: int = 1,
    rate: float = 10,
    extra: Sequence[str] = (),
    timeout: float = 60.0,
    localPort: Optional[int] = None,
    keys: Optional[dict[str, str]] = None,
) -> ToolResult:
    """
    Run sipp as a UAC with C{scenario} (a file in tests/scenarios/ or a
    path) against C{target} (host:port); exit code 0 means every call
    succeeded.  C{keys} fill C{[name]} keywords of the scenario (sipp -key).
    """
    path = scenario if os.path.isabs(scenario) else os.path.join(SCENARIOS, scenario)
    workdir = tempfile.mkdtemp(prefix="voipgw-sipp-")
    kind = socket.SOCK_DGRAM if transport.startswith("u") else socket.SOCK_STREAM
    port = localPort or freePort(kind)
    argv = [
        shutil.which("sipp") or "sipp", "-sf", path, target, "-t", transport, "-m", str(calls),
        "-r", str(rate), "-i", "127.0.0.1", "-p", str(port), "-nostdin", "-trace_err",
        "-timeout", f"{int(timeout) - 5}s", "-timeout_error", "-max_recv_loops", "1000",
        *extra,
    ]
    for name, value in (keys or {}).items():
        argv += ["-key", name, value]
    try:
        return await runTool(argv, cwd=workdir, timeout=timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class Stunnel:
    """An stunnel client: plain TCP on C{localPort} -> TLS to C{target}."""

    def __init__(self, targetHost: str, targetPort: int, caFile: str, checkHost: str = "localhost") -> None:
        self.directory = tempfile.mkdtemp(prefix="voipgw-stunnel-")
        self.localPort = freePort(socket.SOCK_STREAM)
        self.config = os.path.join(self.directory, "stunnel.conf")
        self.pidFile = os.path.join(self.directory, "stunnel.pid")
        with open(self.config, "w") as f:
            f.write(
                f"foreground = yes\npid = {self.pidFile}\n"
                f"output = {os.path.join(self.directory, 'stunnel.log')}\n"
                "[sip]\nclient = yes\n"
                f"accept = 127.0.0.1:{self.localPort}\nconnect = {targetHost}:{targetPort}\n"
                f"CAfile = {caFile}\nverifyChain = yes\ncheckHost = {checkHost}\n"
            )
        self.collector = _Collector()
        self.process = None

    async def start(self, reactor=globalReactor) -> None:  # type: ignore[no-untyped-def]
        binary = shutil.which("stunnel4") or shutil.which("stunnel") or "stunnel4"
        self.process = reactor.spawnProcess(self.collector, binary, [binary, self.config], env=dict(os.environ))
        log = os.path.join(self.directory, "stunnel.log")
        for _ in range(200):
            if os.path.exists(log) and "Configuration successful" in open(log, errors="replace").read():
                return
            await deferLater(reactor, 0.05, lambda: None)
        raise RuntimeError("stunnel did not start: " + b"".join(self.collector.err).decode(errors="replace"))

    async def stop(self) -> None:
        if self.process is not None:
            try:
                self.process.signalProcess("TERM")
            except error.ProcessExitedAlready:
                pass
            await self.collector.done
        shutil.rmtree(self.directory, ignore_errors=True)


def provisionSubscribers(directory: str, domain: str, users: dict[str, str]) -> str:
    """
    Create a SQLite subscriber database in C{directory} holding C{users}
    (username -> password) of C{domain}, the way an operator does: with
    C{voipgw-admin db init} and C{subscriber import}.  Returns its URL.
    """
    from voipgw.admin.cli import main as adminMain

    url = f"sqlite:///{directory}/subscribers.sqlite"
    rows = os.path.join(directory, "subscribers.csv")
    with open(rows, "w") as f:
        f.write("username,domain,password\n")
        for username, password in users.items():
            f.write(f"{username},{domain},{password}\n")
    for argv in (["db", "init", "--db", url], ["subscriber", "import", rows, "--db", url, "--quiet"]):
        if adminMain(argv) != 0:
            raise RuntimeError(f"voipgw-admin {' '.join(argv)} failed")
    return url


def sippCredentials(directory: str, name: str, users: dict[str, str]) -> str:
    """
    A sipp injection file (-inf) giving each call, in order, a username
    ([field0]) and an [authentication] keyword with its password ([field1]).
    """
    path = os.path.join(directory, f"{name}.csv")
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for username, password in users.items():
            f.write(f"{username};[authentication username={username} password={password}];\n")
    return path
