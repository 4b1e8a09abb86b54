# -*- test-case-name: tests.test_tap -*-
"""
C{twistd voipgw}: command-line options and the service maker.

Options only parse (and raise C{UsageError}); the config file and the
overrides are validated by L{voipgw.config.parseConfig}.
"""

from __future__ import annotations

from typing import Any

from twisted.python import usage

from voipgw.config import ConfigError, NodeConfig, parseConfig, readINI


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run a voipgw SIP node. With no options it listens on udp:127.0.0.1:5060 and "
        "tcp:127.0.0.1:5060 with embedded defaults (SQLite subscribers, in-memory location)."
    )
    optParameters = [
        ["config", "c", None, "INI configuration file (see docs/configuration.md)."],
        ["manhole", None, None, "Manhole SSH endpoint, e.g. tcp:2222 (binds to 127.0.0.1)."],
        ["data-dir", None, None, "Directory for the node's files (default: ./data)."],
        ["advertise", None, None, "Address put in Via/Record-Route for 0.0.0.0/:: listeners."],
        ["subscribers", None, None, "Subscriber database master URL (default: SQLite in the data directory)."],
        ["workers", None, None, "Worker processes sharing the SIP ports (default: [node] workers, else one per core)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["domain"] = []
        self["subscribers-replica"] = []
        self["trusted"] = []

    def opt_listen(self, spec: str) -> None:
        """Listen on udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT (repeatable)."""
        self["listen"].append(spec)

    def opt_domain(self, name: str) -> None:
        """A SIP domain this node is responsible for (repeatable)."""
        self["domain"].append(name)

    def opt_subscribers_replica(self, url: str) -> None:
        """A subscriber database replica URL (repeatable)."""
        self["subscribers-replica"].append(url)

    def opt_trusted(self, network: str) -> None:
        """A source network (CIDR) whose requests skip digest authentication (repeatable)."""
        self["trusted"].append(network)

    def postOptions(self) -> None:
        if self["workers"] is not None:
            if not self["workers"].isdigit() or not 1 <= int(self["workers"]) <= 256:
                raise usage.UsageError(f"--workers {self['workers']}: expected a number from 1 to 256")
        for spec in self["listen"]:
            if spec.split(":", 1)[0].lower() not in ("udp", "tcp", "tls"):
                raise usage.UsageError(f"--listen {spec}: expected udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT")


def configFromOptions(options: Options) -> NodeConfig:
    """Read the config file (if any) and apply the command-line overrides."""
    sections: dict[str, dict[str, str]] = readINI(options["config"]) if options["config"] else {}
    node = dict(sections.get("node", {}))
    if options["listen"]:
        node["listen"] = ", ".join(options["listen"])
    if options["domain"]:
        node["domain"] = ", ".join(options["domain"])
    if options["data-dir"]:
        node["data_dir"] = options["data-dir"]
    if options["advertise"]:
        node["advertise"] = options["advertise"]
    sections["node"] = node
    if options["subscribers"] or options["subscribers-replica"]:
        subscribers = dict(sections.get("subscribers", {}))
        if options["subscribers"]:
            subscribers["master"] = options["subscribers"]
        if options["subscribers-replica"]:
            subscribers["replicas"] = ", ".join(options["subscribers-replica"])
        sections["subscribers"] = subscribers
    if options["trusted"]:
        routing = dict(sections.get("routing", {}))
        routing["trusted"] = ", ".join(filter(None, [routing.get("trusted", ""), *options["trusted"]]))
        sections["routing"] = routing
    if options["manhole"]:
        manhole = dict(sections.get("manhole", {}))
        manhole["listen"] = options["manhole"]
        sections["manhole"] = manhole
    return parseConfig(sections)


def makeService(options: Options) -> Any:
    from twisted.internet import reactor

    from voipgw.node import validateConfig
    from voipgw.workers import runWorkers

    try:
        config = configFromOptions(options)
        validateConfig(config)
        return runWorkers(config, int(options["workers"]) if options["workers"] else None, reactor)
    except ConfigError as e:
        raise SystemExit(f"voipgw: configuration error: {e}") from None
