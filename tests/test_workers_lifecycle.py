"""twistd voipgw with worker processes: serves, stops cleanly, and never outlives its parent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from twisted.trial import unittest

from tests.nodes import freeSIPPort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def workerPids(parent: int) -> list[int]:
    """Processes running voipgw.workers.child whose spec belongs to this test's parent."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:]
            if "voipgw.workers.child" in line and int(line.split()[1]) == parent]


def options(port: int) -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bKlife{time.time_ns()}\r\n"
        "From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: life@127.0.0.1\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class WorkerLifecycleTests(unittest.TestCase):
    timeout = 60

    def startTwistd(self) -> tuple[subprocess.Popen, int]:
        port = freeSIPPort()
        directory = tempfile.mkdtemp(prefix="voipgw-life-")
        process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
             "-l", os.path.join(directory, "twistd.log"), "voipgw", "--workers", "2",
             "--listen", f"udp:127.0.0.1:{port}", "--data-dir", os.path.join(directory, "data")],
            cwd=ROOT,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        self.log = os.path.join(directory, "twistd.log")
        deadline = time.monotonic() + 30
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            while time.monotonic() < deadline:
                s.sendto(options(port), ("127.0.0.1", port))
                try:
                    if s.recv(65535).startswith(b"SIP/2.0 200"):
                        break
                except socket.timeout:
                    continue
            else:
                self.fail("the node did not answer OPTIONS: " + open(os.path.join(directory, "twistd.log")).read()[-3000:])
        self.assertEqual(len(workerPids(process.pid)), 2)
        return process, port

    def waitGone(self, pids: list[int]) -> list[int]:
        deadline = time.monotonic() + 10
        alive = pids
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [p for p in alive if os.path.exists(f"/proc/{p}") and "Z" not in open(f"/proc/{p}/stat").read().split()[2]]
        return alive

    def test_sigtermStopsWorkers(self) -> None:
        process, _ = self.startTwistd()
        pids = workerPids(process.pid)
        process.send_signal(signal.SIGTERM)
        # twistd shuts down cleanly, then re-raises the signal for its exit status.
        self.assertIn(process.wait(timeout=20), (0, -signal.SIGTERM))
        self.assertEqual(self.waitGone(pids), [])
        log = open(self.log).read()
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)

    def test_workersDieWithAKilledParent(self) -> None:
        """SIGKILL on the parent: the workers notice (stdin closes) and release the port."""
        process, port = self.startTwistd()
        pids = workerPids(process.pid)
        process.kill()
        process.wait()
        self.assertEqual(self.waitGone(pids), [])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))
