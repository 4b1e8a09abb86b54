"""INI configuration parsing and its errors."""

from __future__ import annotations

import os
import tempfile

from twisted.trial import unittest

from voipgw.config import ConfigError, parseConfig, readINI


class ConfigTests(unittest.SynchronousTestCase):
    def test_example(self) -> None:
        """voipgw.ini.example parses (with its TLS listener's files assumed)."""
        path = os.path.join(os.path.dirname(__file__), "..", "voipgw.ini.example")
        sections = readINI(path)
        config = parseConfig(sections)
        self.assertTrue(config.listen)
        self.assertEqual(config.manhole.listen, "tcp:2222:interface=127.0.0.1")

    def test_badNumbers(self) -> None:
        for section, key, value, words in [
            ("transport", "max_message_size", "abc", "whole number"),
            ("transport", "max_message_size", "10", "outside"),
            ("timers", "t1", "-1", "outside"),
            ("transport", "idle_timeout", "soon", "number"),
            ("transport", "tls_verify_clients", "maybe", "yes or no"),
        ]:
            with self.assertRaises(ConfigError) as e:
                parseConfig({section: {key: value}})
            self.assertIn(f"[{section}] {key}", str(e.exception))
            self.assertIn(words, str(e.exception))

    def test_t2BelowT1(self) -> None:
        with self.assertRaises(ConfigError) as e:
            parseConfig({"timers": {"t1": "5", "t2": "1"}})
        self.assertIn("[timers]", str(e.exception))

    def test_tlsListenerNeedsCertificate(self) -> None:
        with self.assertRaises(ConfigError):
            parseConfig({"node": {"listen": "tls:127.0.0.1:5061"}})

    def test_malformedFile(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "bad.ini")
        with open(path, "w") as f:
            f.write("listen = outside any section\n")
        with self.assertRaises(ConfigError) as e:
            readINI(path)
        self.assertIn(path, str(e.exception))

    def test_ipv6Listener(self) -> None:
        config = parseConfig({"node": {"listen": "udp:[::1]:5060, tcp:[2001:db8::1]:5070"}})
        self.assertEqual([(a.host, a.port) for a in config.listen], [("::1", 5060), ("2001:db8::1", 5070)])
        with self.assertRaises(ConfigError):
            parseConfig({"node": {"listen": "udp:::1:5060"}})


class AdvertiseConfigTests(unittest.SynchronousTestCase):
    def test_wildcardNeedsAdvertise(self) -> None:
        with self.assertRaises(ConfigError) as e:
            parseConfig({"node": {"listen": "udp:0.0.0.0:5060"}})
        self.assertIn("advertise", str(e.exception))

    def test_advertise(self) -> None:
        config = parseConfig({"node": {"listen": "udp:0.0.0.0:5060, tcp:[::]:5060", "advertise": "SIP.Example.COM"}})
        self.assertEqual(config.advertise, "sip.example.com")
        self.assertEqual(config.transport.advertise, "sip.example.com")
        self.assertIn("sip.example.com", config.domains)
        with self.assertRaises(ConfigError):
            parseConfig({"node": {"listen": "udp:0.0.0.0:5060", "advertise": "not a host"}})
