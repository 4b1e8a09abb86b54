"""Start real nodes on free loopback ports inside the trial reactor."""

from __future__ import annotations

import tempfile
from typing import Any, Optional

from twisted.internet import reactor as globalReactor

from voipgw.config import parseConfig
from voipgw.node import VoipNode, buildNode
from tests.siptools import freePort
import socket


def freeSIPPort(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on C{host}."""
    for _ in range(50):
        port = freePort(socket.SOCK_STREAM, host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


async def startNode(
    testCase: Any,
    transports: tuple[str, ...] = ("udp", "tcp"),
    sections: Optional[dict[str, dict[str, str]]] = None,
    host: str = "127.0.0.1",
    applications: Optional[list[Any]] = None,
    reactor: Any = globalReactor,
) -> VoipNode:
    """
    Build and start a node listening on one free port for each transport in
    C{transports}; it is stopped when the test ends.
    """
    port = freeSIPPort(host)
    hostText = f"[{host}]" if ":" in host else host
    sections = {k: dict(v) for k, v in (sections or {}).items()}
    node = dict(sections.get("node", {}))
    tlsPort = freeSIPPort(host) if "tls" in transports else None
    specs = [f"{t}:{hostText}:{tlsPort if t == 'tls' else port}" for t in transports]
    node.setdefault("listen", ", ".join(specs))
    node.setdefault("data_dir", tempfile.mkdtemp(prefix="voipgw-node-"))
    sections["node"] = node
    config = parseConfig(sections)
    theNode = buildNode(config, reactor, applications=applications)
    await theNode.startService()
    testCase.addCleanup(theNode.stopService)
    return theNode


def listenerPort(node: VoipNode, transport: str) -> int:
    listener = node.transports.listenerFor(transport)
    assert listener is not None, f"node has no {transport} listener"
    return listener.port
