"""The twistd plugin's option parsing and config overrides."""

from __future__ import annotations

import os
import tempfile

from twisted.python import usage
from twisted.trial import unittest

from voipgw.config import ConfigError
from voipgw.tap import Options, configFromOptions, makeService
from voipgw.transport.address import Address


class OptionsTests(unittest.SynchronousTestCase):
    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        """No arguments: UDP and TCP on 127.0.0.1:5060, localhost domains, no manhole."""
        config = configFromOptions(self.parse())
        self.assertEqual(config.listen, [Address("udp", "127.0.0.1", 5060), Address("tcp", "127.0.0.1", 5060)])
        self.assertEqual(config.domains, ["localhost", "127.0.0.1"])
        self.assertIsNone(config.manhole.listen)

    def test_repeatableListenAndDomain(self) -> None:
        config = configFromOptions(self.parse(
            "--listen", "udp:127.0.0.2:5070", "--listen", "tcp:[::1]:5071",
            "--domain", "Example.COM", "--domain", "sip.example.net"))
        self.assertEqual(config.listen, [Address("udp", "127.0.0.2", 5070), Address("tcp", "::1", 5071)])
        self.assertEqual(config.domains, ["example.com", "sip.example.net"])

    def test_workersOption(self) -> None:
        """--workers 2 gives a pool of worker processes; a bad count is a usage error."""
        from voipgw.workers import WorkerPool

        options = self.parse("--data-dir", tempfile.mkdtemp(), "--listen", "udp:127.0.0.1:0", "--workers", "2")
        pool = makeService(options)
        self.assertIsInstance(pool, WorkerPool)
        self.assertEqual(pool.count, 2)
        for bad in ("0", "x", "1000"):
            with self.assertRaises(usage.UsageError):
                self.parse("--workers", bad)

    def test_badConfigFailsBeforeWorkersStart(self) -> None:
        """A bad [routing] value stops twistd in the parent, with workers configured."""
        path = os.path.join(tempfile.mkdtemp(), "voipgw.ini")
        with open(path, "w") as f:
            f.write("[node]\nworkers = 2\n[routing]\nfork_mode = sideways\n")
        with self.assertRaises(SystemExit) as e:
            makeService(self.parse("--config", path))
        self.assertIn("fork_mode", str(e.exception.code))

    def test_badListenIsUsageError(self) -> None:
        with self.assertRaises(usage.UsageError):
            self.parse("--listen", "sctp:127.0.0.1:5060")

    def test_listenWithoutPortIsConfigError(self) -> None:
        with self.assertRaises(ConfigError) as e:
            configFromOptions(self.parse("--listen", "udp:127.0.0.1"))
        self.assertIn("port", str(e.exception))

    def test_configFileAndOverrides(self) -> None:
        """Command-line options override the file's [node] and [manhole] values."""
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "voipgw.ini")
        with open(path, "w") as f:
            f.write("[node]\nlisten = udp:127.0.0.1:6000\ndomain = a.example\n[timers]\nt1 = 0.25\n"
                    "[manhole]\nlisten = tcp:2222\nauthorized_keys = /x\n")
        config = configFromOptions(self.parse("--config", path, "--domain", "b.example", "--manhole", "tcp:3333"))
        self.assertEqual([str(a) for a in config.listen], ["udp:127.0.0.1:6000"])
        self.assertEqual(config.domains, ["b.example"])
        self.assertEqual(config.timers.T1, 0.25)
        self.assertEqual(config.manhole.listen, "tcp:3333")

    def test_subscriberOptions(self) -> None:
        config = configFromOptions(self.parse(
            "--subscribers", "mysql+mysqldb://u@db1/voipgw",
            "--subscribers-replica", "mysql+mysqldb://u@db2/voipgw",
            "--subscribers-replica", "mysql+mysqldb://u@db3/voipgw"))
        self.assertEqual(config.section("subscribers")["master"], "mysql+mysqldb://u@db1/voipgw")
        self.assertEqual(config.section("subscribers")["replicas"], "mysql+mysqldb://u@db2/voipgw, mysql+mysqldb://u@db3/voipgw")

    def test_missingConfigFile(self) -> None:
        with self.assertRaises(ConfigError) as e:
            configFromOptions(self.parse("--config", "/nonexistent/voipgw.ini"))
        self.assertIn("/nonexistent/voipgw.ini", str(e.exception))

    def test_makeServiceReportsConfigErrors(self) -> None:
        """A bad config ends twistd with one clear line, not a traceback."""
        options = self.parse("--listen", "tls:127.0.0.1:5061")
        with self.assertRaises(SystemExit) as e:
            makeService(options)
        self.assertIn("tls_certificate", str(e.exception.code))

    def test_makeServiceBuildsNamedServices(self) -> None:
        options = self.parse("--data-dir", tempfile.mkdtemp(), "--listen", "udp:127.0.0.1:0", "--workers", "1")
        node = makeService(options)
        for name in ("transports", "transactions", "subscribers", "location"):
            self.assertEqual(node.getServiceNamed(name).name, name)


class TrustedOptionTests(unittest.SynchronousTestCase):
    def test_trustedAddsToConfig(self) -> None:
        """--trusted networks are added to [routing] trusted and reach the routing service."""
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "voipgw.ini")
        with open(path, "w") as f:
            f.write("[routing]\ntrusted = 198.51.100.0/24\n")
        options = Options()
        options.parseOptions(["--config", path, "--trusted", "203.0.113.0/24", "--trusted", "2001:db8::/32",
                              "--data-dir", directory, "--listen", "udp:127.0.0.1:0", "--workers", "1"])
        config = configFromOptions(options)
        self.assertEqual(config.section("routing")["trusted"], "198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32")
        routing = makeService(options).getServiceNamed("routing")
        self.assertEqual(len(routing.config.trusted), 3)

    def test_badTrustedNetwork(self) -> None:
        options = Options()
        options.parseOptions(["--trusted", "not-a-network", "--data-dir", tempfile.mkdtemp()])
        with self.assertRaises(SystemExit) as e:
            makeService(options)
        self.assertIn("trusted", str(e.exception.code))

    def test_unknownRoutingKeyRefused(self) -> None:
        from voipgw.config import ConfigError
        from voipgw.routing.config import RoutingConfig

        with self.assertRaises(ConfigError) as e:
            RoutingConfig.fromSection({"trustd": "10.0.0.0/8"})
        self.assertIn("trustd", str(e.exception))
