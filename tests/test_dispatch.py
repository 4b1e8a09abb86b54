"""The node's transaction user: OPTIONS for the node, applications by method, errors for the rest."""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.task import Clock
from twisted.trial import unittest

from voipgw.dispatch import RequestDispatcher
from voipgw.sip.message import Request
from voipgw.testing.transport import FakeTransportService
from voipgw.transaction.layer import TransactionLayer
from voipgw.transport.address import Address

SOURCE = Address("udp", "198.51.100.7", 5060)


def request(method: str, uri: str, cseqMethod: Optional[str] = None, extra: str = "") -> bytes:
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK{method}{abs(hash(uri)) % 10**8}\r\n"
        f"From: <sip:caller@example.net>;tag=f1\r\nTo: <{uri}>\r\n"
        f"Call-ID: call-{method}@198.51.100.7\r\nCSeq: 1 {cseqMethod or method}\r\n"
        f"Max-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


class Application:
    def __init__(self, methods: set[str]) -> None:
        self.methods = methods
        self.seen: list[tuple[Request, Any]] = []

    def handleRequest(self, request: Request, transaction: Any) -> None:
        self.seen.append((request, transaction))
        transaction.respond(202)


class DispatcherTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.transports = FakeTransportService(self.clock)
        self.dispatcher = RequestDispatcher(self.transports, ["Example.COM"])
        self.layer = TransactionLayer(self.transports, self.clock, user=self.dispatcher)

    def answer(self, data: bytes) -> Any:
        self.transports.clear()
        self.transports.receive(data, SOURCE)
        [sent] = self.transports.responses()
        return sent.parsed()

    def test_optionsForNodeAddress(self) -> None:
        response = self.answer(request("OPTIONS", "sip:192.0.2.1:5060"))
        self.assertEqual(response.code, 200)
        self.assertIn("OPTIONS", response.getHeader("Allow"))
        self.assertEqual(response.getHeader("Accept"), "application/sdp")
        self.assertIn("path", response.getHeader("Supported"))
        self.assertIsNotNone(response.toAddress.tag)

    def test_optionsAllowFollowsApplications(self) -> None:
        """
        The Allow header (built once and kept) changes when applications
        are registered or unregistered, and when a fallback comes or goes;
        the four OPTIONS headers keep their order.
        """
        def allow(n: int) -> str:
            response = self.answer(request("OPTIONS", f"sip:192.0.2.1;n={n}"))
            self.assertEqual(
                [name for name, _ in response.headers if name in ("Allow", "Accept", "Supported", "Accept-Language")],
                ["Allow", "Accept", "Supported", "Accept-Language"],
            )
            return response.getHeader("Allow")

        self.assertEqual(allow(0), "ACK, CANCEL, OPTIONS")
        registrar = Application({"REGISTER"})
        self.dispatcher.register(registrar)
        self.assertEqual(allow(1), "ACK, CANCEL, OPTIONS, REGISTER")
        router = Application({"*"})
        self.dispatcher.register(router)
        self.assertIn("INVITE", allow(2))
        self.dispatcher.unregister(router)
        self.dispatcher.unregister(registrar)
        self.assertEqual(allow(3), "ACK, CANCEL, OPTIONS")
        self.dispatcher.applications["MESSAGE"] = registrar  # edited directly
        self.assertEqual(allow(4), "ACK, CANCEL, MESSAGE, OPTIONS")
        self.assertEqual(allow(5), ", ".join(self.dispatcher.allowedMethods))

    def test_optionsForDomainCaseInsensitive(self) -> None:
        self.assertEqual(self.answer(request("OPTIONS", "sip:example.com")).code, 200)

    def test_optionsForAUserIsNotForTheNode(self) -> None:
        """OPTIONS to sip:alice@example.com belongs to routing: without it, 404."""
        self.assertEqual(self.answer(request("OPTIONS", "sip:alice@example.com")).code, 404)

    def test_unknownMethod501(self) -> None:
        response = self.answer(request("FOOBAR", "sip:192.0.2.1"))
        self.assertEqual(response.code, 501)
        self.assertIn("OPTIONS", response.getHeader("Allow"))

    def test_knownMethodForNode405(self) -> None:
        response = self.answer(request("INVITE", "sip:192.0.2.1"))
        self.assertEqual(response.code, 405)
        self.assertNotIn("INVITE", response.getHeader("Allow"))

    def test_requestForUserWithoutRouting404(self) -> None:
        self.assertEqual(self.answer(request("MESSAGE", "sip:bob@elsewhere.example")).code, 404)

    def test_unsupportedScheme416(self) -> None:
        self.assertEqual(self.answer(request("OPTIONS", "nobodyknowsthisscheme:totallyopaquecontent")).code, 416)

    def test_applicationByMethodThenFallback(self) -> None:
        registrar = Application({"REGISTER"})
        router = Application({"*"})
        self.dispatcher.register(registrar)
        self.dispatcher.register(router)
        self.assertEqual(self.answer(request("REGISTER", "sip:example.com")).code, 202)
        self.assertEqual(self.answer(request("INVITE", "sip:bob@example.com")).code, 202)
        self.assertEqual(len(registrar.seen), 1)
        self.assertEqual([r.method for r, _ in router.seen], ["INVITE"])
        self.assertIn("REGISTER", self.dispatcher.allowedMethods)
        self.dispatcher.unregister(router)
        self.assertEqual(self.answer(request("INVITE", "sip:carol@example.com")).code, 404)

    def test_retransmissionReachesApplicationOnce(self) -> None:
        application = Application({"MESSAGE"})
        self.dispatcher.register(application)
        data = request("MESSAGE", "sip:bob@example.com")
        for _ in range(3):
            self.transports.receive(data, SOURCE)
        self.assertEqual(len(application.seen), 1)
        self.assertEqual(len(self.transports.responses(202)), 3)

    def test_applicationCrashAnswered500(self) -> None:
        class Broken(Application):
            def handleRequest(self, request: Request, transaction: Any) -> None:
                raise RuntimeError("bug")

        self.dispatcher.register(Broken({"MESSAGE"}))
        self.assertEqual(self.answer(request("MESSAGE", "sip:bob@example.com")).code, 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
