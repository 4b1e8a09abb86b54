"""
The tutorial's application (docs/examples/forwarding.py) does what
docs/tutorial.md says, loaded the way the tutorial loads it.
"""

from __future__ import annotations

import os
import sys

from twisted.trial import unittest

from voipgw.config import ConfigError
from voipgw.routing import RoutingConfig, RoutingService, loadApplicationClass
from voipgw.testing.routing import RoutingHarness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "docs", "examples")
VOICEMAIL = "sip:vm@192.0.2.99:5060"


class TutorialTests(unittest.TestCase):
    def setUp(self) -> None:
        sys.path.insert(0, EXAMPLES)
        self.addCleanup(sys.path.remove, EXAMPLES)
        self.cls = loadApplicationClass("forwarding:ForwardingRouting")
        self.patch(self.cls, "forwards", {"bob@example.com": VOICEMAIL})
        self.h = RoutingHarness(self.cls, {"application": "forwarding:ForwardingRouting", "timer_c": "20"})
        self.addCleanup(self.h.stop)

    def finals(self) -> list[int]:
        return sorted({id(s.message): s.message.code for s in self.h.finalResponses()}.values())  # type: ignore[union-attr]

    def test_loadedFromConfig(self) -> None:
        self.assertIsInstance(self.h.service, self.cls)
        self.assertTrue(issubclass(self.cls, RoutingService))

    def test_forwardOnBusy(self) -> None:
        self.h.register("bob@example.com", "sip:bob@192.0.2.20:5060")
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.h.answer(self.h.lastRequest("INVITE"), 486)
        forwarded = self.h.lastRequest("INVITE")
        self.assertEqual(str(forwarded.message.requestURI), VOICEMAIL)  # type: ignore[union-attr]
        self.h.answer(forwarded, 200)
        self.assertEqual(self.finals(), [200])
        self.assertEqual(self.h.counters.get("forwarding.forwarded"), 1)

    def test_forwardOnNoAnswer(self) -> None:
        self.h.register("bob@example.com", "sip:bob@192.0.2.20:5060")
        self.h.receive(self.h.invite("sip:bob@example.com"))
        phone = self.h.lastRequest("INVITE")
        self.h.answer(phone, 180)
        self.h.advance(20)  # timer C
        [cancel] = self.h.requests("CANCEL")
        self.h.answer(cancel, 200)
        self.h.answer(phone, 487)
        self.assertEqual(str(self.h.lastRequest("INVITE").message.requestURI), VOICEMAIL)  # type: ignore[union-attr]

    def test_forwardWhenNotRegistered(self) -> None:
        self.h.receive(self.h.invite("sip:bob@example.com"))
        self.assertEqual(self.h.lastRequest("INVITE").destination.host, "192.0.2.99")

    def test_forwardOncePerCall(self) -> None:
        self.h.register("bob@example.com", "sip:bob@192.0.2.20:5060")
        self.h.register("bob@example.com", "sip:bob@192.0.2.21:5060")
        self.h.receive(self.h.invite("sip:bob@example.com"))
        first, second = self.h.requests("INVITE")
        self.h.answer(first, 486)
        self.h.answer(second, 486)
        self.assertEqual(len(self.h.requests("INVITE")), 3)

    def test_otherUsersUntouched(self) -> None:
        self.h.register("carol@example.com", "sip:carol@192.0.2.30:5060")
        self.h.receive(self.h.invite("sip:carol@example.com"))
        self.h.answer(self.h.lastRequest("INVITE"), 486)
        self.assertEqual(self.finals(), [486])

    def test_tutorialShowsTheExample(self) -> None:
        with open(os.path.join(ROOT, "docs", "tutorial.md")) as f:
            tutorial = f.read()
        with open(os.path.join(EXAMPLES, "forwarding.py")) as f:
            example = f.read()
        start = example.index("class ForwardingRouting")
        self.assertIn(example[start:].strip(), tutorial)


class LoaderTests(unittest.TestCase):
    def test_errors(self) -> None:
        for spec, message in [
            ("nocolon", "expected package.module:ClassName"),
            ("no.such.module:X", "cannot import module"),
            ("voipgw.routing:Nope", "has no attribute 'Nope'"),
            ("voipgw.routing:Target", "not a subclass"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                loadApplicationClass(spec)
            self.assertIn(message, str(caught.exception))

    def test_configRejectsBadSpec(self) -> None:
        with self.assertRaises(ConfigError):
            RoutingConfig.fromSection({"application": "justamodule"})

    def test_stock(self) -> None:
        self.assertIs(loadApplicationClass("voipgw.routing:RoutingService"), RoutingService)
