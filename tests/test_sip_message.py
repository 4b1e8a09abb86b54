# -*- test-case-name: tests.test_sip_message -*-
"""Requests and responses from and to wire bytes (RFC 3261 §7, §18.3, §20)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from voipgw.sip import (
    CSeq, DigestParams, Limits, MessageTooLarge, NameAddress, Request, Response, SIPParseError,
    Via, parseMessage, responseTo,
)

HEAD = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
)
BODY = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"


def invite(extra: bytes = b"", body: bytes = BODY, length: bytes | None = None) -> bytes:
    if length is None:
        length = str(len(body)).encode()
    cl = b"Content-Length: " + length + b"\r\n" if length != b"-" else b""
    return HEAD + extra + cl + b"\r\n" + body


class ParseTests(SynchronousTestCase):
    def test_request(self) -> None:
        m = parseMessage(invite())
        assert isinstance(m, Request)
        self.assertEqual((m.method, str(m.requestURI)), ("INVITE", "sip:bob@biloxi.example.com"))
        self.assertEqual(m.body, BODY)
        self.assertEqual(m.toAddress.display, "Bob")
        self.assertEqual(m.fromAddress.tag, "1928301774")
        self.assertEqual(m.callId, "a84b4c76e66710@pc33.atlanta.example.com")
        self.assertEqual((m.cseq.number, m.cseq.method), (314159, "INVITE"))
        self.assertEqual(m.maxForwards, 70)

    def test_response(self) -> None:
        data = (
            b"SIP/2.0 180 Ringing\r\n" + HEAD.split(b"\r\n", 1)[1] + b"Content-Length: 0\r\n\r\n"
        )
        m = parseMessage(data)
        assert isinstance(m, Response)
        self.assertEqual((m.code, m.reason, m.isProvisional), (180, "Ringing", True))

    def test_folding(self) -> None:
        """§7.3.1: a line starting with SP/HT continues the header; folds become one SP."""
        m = parseMessage(invite(b"Subject: I know you're there,\r\n   pick up the phone\r\n\tand talk to me!\r\n"))
        self.assertEqual(m.getHeader("Subject"), "I know you're there, pick up the phone and talk to me!")

    def test_foldBeforeFirstHeader(self) -> None:
        data = b"OPTIONS sip:a@b.example SIP/2.0\r\n folded\r\n" + HEAD.split(b"\r\n", 1)[1] + b"\r\n"
        self.assertRaises(SIPParseError, parseMessage, data)

    def test_compactForms(self) -> None:
        """§7.3.3: v f t i m l s k c e are the compact names."""
        data = (
            b"OPTIONS sip:a@b.example SIP/2.0\r\n"
            b"v: SIP/2.0/UDP h.example;branch=z9hG4bKx\r\nf: <sip:c@d.example>;tag=1\r\n"
            b"t: <sip:a@b.example>\r\ni: abc\r\nCSeq: 1 OPTIONS\r\nm: <sip:c@h.example>\r\n"
            b"s: hi\r\nk: path\r\nc: text/plain\r\ne: gzip\r\nl: 2\r\n\r\nok"
        )
        m = parseMessage(data)
        for name, value in (
            ("Via", "SIP/2.0/UDP h.example;branch=z9hG4bKx"), ("Call-ID", "abc"),
            ("Subject", "hi"), ("Supported", "path"), ("Content-Type", "text/plain"),
            ("Content-Encoding", "gzip"), ("Contact", "<sip:c@h.example>"),
        ):
            self.assertEqual(m.getHeader(name), value)
        self.assertEqual(m.getHeader("i"), "abc")
        self.assertEqual(m.body, b"ok")
        self.assertIn(b"\r\nCall-ID: abc\r\n", m.toBytes())

    def test_caseInsensitiveNames(self) -> None:
        m = parseMessage(invite(b"x-CUSTOM: 1\r\nsUbJeCt: s\r\n"))
        self.assertEqual(m.getHeader("X-Custom"), "1")
        self.assertEqual(m.getHeader("subject"), "s")
        m.setHeader("X-CUSTOM", "2")
        self.assertEqual(m.getHeaderValues("x-custom"), ["2"])
        m.removeHeader("X-custom")
        self.assertIsNone(m.getHeader("x-CUSTOM"))

    def test_multiValue(self) -> None:
        """§7.3.1: list headers split at commas outside quotes and <>."""
        m = parseMessage(invite(
            b'Contact: "Smith, J" <sip:j,k@a.example>;q=0.5, <sip:k@b.example>\r\n'
            b"Route: <sip:p1.example;lr>,<sip:p2.example;lr>\r\nRoute: <sip:p3.example;lr>\r\n"
            b"Subject: one, two\r\n"
        ))
        self.assertEqual([c.display for c in m.contacts], ["Smith, J", None])
        self.assertEqual(m.contacts[0].uri.user, "j,k")
        self.assertEqual([str(r.uri) for r in m.routes], ["sip:p1.example;lr", "sip:p2.example;lr", "sip:p3.example;lr"])
        self.assertEqual(m.getHeaderValues("Subject"), ["one, two"])

    def test_viaReceivedRport(self) -> None:
        """RFC 3581: rport without a value in requests; received/rport filled in."""
        m = parseMessage(invite(b"Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKa;received=192.0.2.9;rport=4321\r\n"))
        top, second = m.vias
        self.assertEqual((top.rport, top.received), ("", None))
        self.assertEqual((second.transport, second.host, second.port), ("TCP", "[2001:db8::1]", 5070))
        self.assertEqual((second.received, second.rport), ("192.0.2.9", "4321"))
        self.assertTrue(top.isRFC3261Branch)
        top.params["received"] = "198.51.100.1"
        top.params["rport"] = "5062"
        self.assertEqual(str(top), "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport=5062;received=198.51.100.1")

    def test_nameAddrVsAddrSpec(self) -> None:
        """§20.10: after an addr-spec the parameters belong to the header."""
        spec = NameAddress.parse("sip:a@b.example;tag=1")
        self.assertEqual((spec.params, spec.uri.params, spec.bracketed), ({"tag": "1"}, {}, False))
        addr = NameAddress.parse("<sip:a@b.example;lr>;tag=1")
        self.assertEqual((addr.params, addr.uri.params), ({"tag": "1"}, {"lr": None}))
        self.assertRaises(SIPParseError, NameAddress.parse, "sip:a@b.example?x=y")
        self.assertRaises(SIPParseError, NameAddress.parse, "< sip:a@b.example >")
        self.assertTrue(NameAddress.parse("*").wildcard)

    def test_digest(self) -> None:
        d = DigestParams.parse(
            'Digest username="bob", realm="biloxi.example.com", nonce="dcd9,8b", uri="sip:b.example",'
            ' response="6629fae4", algorithm=MD5, qop=auth, nc=00000001'
        )
        self.assertEqual(d.scheme, "Digest")
        self.assertEqual(d.params["nonce"], "dcd9,8b")
        self.assertEqual(d.params["nc"], "00000001")
        again = DigestParams.parse(d.format(quoted=("username", "realm", "nonce", "uri", "response")))
        self.assertEqual(again.params, d.params)

    def test_digestDuplicateRejected(self) -> None:
        self.assertRaises(SIPParseError, DigestParams.parse, 'Digest realm="a", REALM="b"')
        self.assertRaises(SIPParseError, DigestParams.parse, 'Digest realm="a')
        self.assertRaises(SIPParseError, DigestParams.parse, "Digest realm=a b")

    def test_authenticateHeaderNotSplit(self) -> None:
        m = parseMessage(invite(b'WWW-Authenticate: Digest realm="a", nonce="b"\r\n'))
        self.assertEqual(len(m.getHeaderValues("WWW-Authenticate")), 1)

    def test_leadingCRLF(self) -> None:
        self.assertIsInstance(parseMessage(b"\r\n\r\n" + invite()), Request)

    def test_bareLF(self) -> None:
        head, body = invite().split(b"\r\n\r\n", 1)
        m = parseMessage(head.replace(b"\r\n", b"\n") + b"\n\n" + body)
        self.assertEqual(m.body, BODY)
        self.assertEqual(m.callId, "a84b4c76e66710@pc33.atlanta.example.com")


class ContentLengthTests(SynchronousTestCase):
    def test_udpMissing(self) -> None:
        """§18.3: on UDP the body is the rest of the datagram."""
        self.assertEqual(parseMessage(invite(length=b"-")).body, BODY)

    def test_udpLongerBodyTruncated(self) -> None:
        m = parseMessage(invite(body=BODY + b"junk", length=str(len(BODY)).encode()))
        self.assertEqual(m.body, BODY)

    def test_shorterBodyRejected(self) -> None:
        with self.assertRaises(SIPParseError) as cm:
            parseMessage(invite(length=str(len(BODY) + 1).encode()))
        self.assertIn("Content-Length", cm.exception.reason)
        self.assertIsInstance(cm.exception.request, Request)

    def test_streamMissing(self) -> None:
        """§20.14: Content-Length is mandatory on streams."""
        self.assertRaises(SIPParseError, parseMessage, invite(length=b"-"), datagram=False)
        self.assertEqual(parseMessage(invite(), datagram=False).body, BODY)

    def test_badValues(self) -> None:
        for bad in (b"abc", b"-1", b"1e3", b"\xc2\xb2", b"9999999999", b"", b"1 2"):
            with self.assertRaises(SIPParseError, msg=bad) as cm:
                parseMessage(invite(length=bad))
            self.assertEqual(cm.exception.status, 400)

    def test_serialiseFixesLength(self) -> None:
        m = parseMessage(invite())
        m.body = b"x"
        self.assertTrue(m.toBytes().endswith(b"Content-Length: 1\r\n\r\nx"))


class LimitsTests(SynchronousTestCase):
    def test_size(self) -> None:
        with self.assertRaises(MessageTooLarge) as cm:
            parseMessage(invite(), Limits(maxMessageSize=100))
        self.assertEqual(cm.exception.status, 513)

    def test_megabyteDatagram(self) -> None:
        self.assertRaises(MessageTooLarge, parseMessage, invite(body=b"x" * 1_000_000))

    def test_lineLength(self) -> None:
        self.assertRaises(MessageTooLarge, parseMessage, invite(b"X-Long: " + b"a" * 200 + b"\r\n"), Limits(maxLineLength=100))
        folded = b"X-Long: " + b"a" * 60 + b"\r\n " + b"b" * 60 + b"\r\n"
        self.assertRaises(MessageTooLarge, parseMessage, invite(folded), Limits(maxLineLength=100))
        self.assertRaises(MessageTooLarge, parseMessage, b"OPTIONS sip:" + b"a" * 200 + b" SIP/2.0\r\n\r\n", Limits(maxLineLength=100))

    def test_headerCount(self) -> None:
        extra = b"".join(b"X-H%d: v\r\n" % i for i in range(30))
        self.assertRaises(MessageTooLarge, parseMessage, invite(extra), Limits(maxHeaders=20))
        parseMessage(invite(extra), Limits(maxHeaders=40))


class MalformedTests(SynchronousTestCase):
    def assertFault(self, data: bytes, words: str, status: int = 400, answerable: bool = False) -> None:
        with self.assertRaises(SIPParseError) as cm:
            parseMessage(data)
        self.assertIn(words, cm.exception.reason)
        self.assertEqual(cm.exception.status, status)
        self.assertEqual(cm.exception.request is not None, answerable)

    def test_startLine(self) -> None:
        self.assertFault(b"INVITE sip:a@b.example\r\n\r\n", "request line")
        self.assertFault(b"SIP/2.0\r\n\r\n", "status line")
        self.assertFault(b"SIP/3.0 200 OK\r\n\r\n", "version", 505)
        self.assertFault(b"SIP/2.0 2000 OK\r\n\r\n", "status code")
        self.assertFault(b"INV@TE sip:a@b.example SIP/2.0\r\n\r\n", "method")
        self.assertFault(b"INVITE sip:a@b.example HTTP/1.1\r\n\r\n", "version")

    def test_badVersionAnswerable(self) -> None:
        self.assertFault(invite().replace(b"SIP/2.0\r\n", b"SIP/2.1\r\n", 1), "version", 505, True)

    def test_missingMandatory(self) -> None:
        for name in (b"Via", b"From", b"To", b"Call-ID", b"CSeq"):
            lines = [l for l in invite().split(b"\r\n") if not l.startswith(name + b":")]
            self.assertFault(b"\r\n".join(lines), name.decode(), answerable=False)

    def test_cseqMismatch(self) -> None:
        self.assertFault(invite().replace(b"314159 INVITE", b"314159 BYE"), "CSeq method", 400, True)

    def test_cseqOutOfRange(self) -> None:
        self.assertFault(invite().replace(b"314159", b"2147483648"), "CSeq", 400, True)
        self.assertFault(invite().replace(b"314159", b"9" * 5000), "CSeq", 400, True)

    def test_maxForwards(self) -> None:
        self.assertFault(invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), "Max-Forwards", 400, True)

    def test_truncated(self) -> None:
        data = invite()
        self.assertFault(data[:40], "truncated")
        self.assertFault(data[: data.index(b"\r\n\r\n")], "truncated")

    def test_badHeaderLines(self) -> None:
        self.assertFault(invite(b"no colon here\r\n"), "header line", answerable=True)
        self.assertFault(invite(b"Bad Name: x\r\n"), "header name", answerable=True)
        self.assertFault(invite(b"X-A: a\rb\r\n"), "CR", answerable=True)

    def test_binaryGarbage(self) -> None:
        for data in (b"\x00\xff\xfe" * 50 + b"\r\n\r\n", b"\r\n\r\n", b"", bytes(range(256)) + b"\r\n\r\n"):
            self.assertRaises(SIPParseError, parseMessage, data)


class EditTests(SynchronousTestCase):
    def test_setAddRemove(self) -> None:
        m = parseMessage(invite())
        m.addHeader("Via", "SIP/2.0/UDP proxy.example;branch=z9hG4bKp", first=True)
        self.assertEqual(m.topVia.host, "proxy.example")
        m.setHeader("Max-Forwards", 69)
        self.assertEqual(m.maxForwards, 69)
        m.setHeaderValues("Route", ["<sip:r1.example;lr>", "<sip:r2.example;lr>"])
        self.assertEqual(len(m.routes), 2)
        m.removeHeader("Route")
        self.assertEqual(m.routes, [])
        self.assertRaises(ValueError, m.setHeader, "Subject", "a\r\nInjected: yes")

    def test_setKeepsPosition(self) -> None:
        m = parseMessage(invite())
        m.setHeader("To", "<sip:carol@example.com>")
        self.assertEqual([n for n, _ in m.headers][:4], ["Via", "Max-Forwards", "To", "From"])
        self.assertEqual(m.toAddress.uri.user, "carol")


class ResponseToTests(SynchronousTestCase):
    def test_copiesAndTag(self) -> None:
        """§8.2.6.2: Vias in order, From, To (+tag), Call-ID, CSeq."""
        m = parseMessage(invite(b"Via: SIP/2.0/UDP second.example;branch=z9hG4bK2\r\n"))
        assert isinstance(m, Request)
        r = responseTo(m, 486, toTag="abc")
        self.assertEqual((r.code, r.reason), (486, "Busy Here"))
        self.assertEqual(r.getHeaderValues("Via"), m.getHeaderValues("Via"))
        self.assertEqual(r.toAddress.tag, "abc")
        self.assertEqual(r.fromAddress.tag, "1928301774")
        self.assertEqual((r.callId, str(r.cseq)), (m.callId, "314159 INVITE"))
        self.assertIsNone(r.getHeader("Max-Forwards"))
        again = parseMessage(r.toBytes())
        self.assertEqual(again.toAddress.tag, "abc")

    def test_noTagFor100OrExistingTag(self) -> None:
        m = parseMessage(invite())
        assert isinstance(m, Request)
        self.assertIsNone(responseTo(m, 100, toTag="x").toAddress.tag)
        m.setHeader("To", "<sip:bob@biloxi.example.com>;tag=old")
        self.assertEqual(responseTo(m, 200, toTag="new").toAddress.tag, "old")


class RoundTripTests(SynchronousTestCase):
    def test_unknownHeadersUntouched(self) -> None:
        extra = b"X-Odd-Header: ;;,,;;,;  \"quoted, value\"\r\nP-Charging-Vector: icid-value=1234;orig-ioi=x\r\n"
        m = parseMessage(invite(extra))
        out = m.toBytes()
        self.assertIn(b"X-Odd-Header: ;;,,;;,;  \"quoted, value\"\r\n", out)
        self.assertIn(b"P-Charging-Vector: icid-value=1234;orig-ioi=x\r\n", out)

    def test_roundTrip(self) -> None:
        data = invite(b"Subject: folded\r\n value\r\n")
        m = parseMessage(data)
        again = parseMessage(m.toBytes())
        self.assertEqual(again.headers, m.headers)
        self.assertEqual(again.body, m.body)
        self.assertEqual(again.toBytes(), m.toBytes())

    def test_build(self) -> None:
        r = Request("OPTIONS", "sip:a@b.example", [
            ("Via", str(Via("UDP", "h.example", 5060, {"branch": "z9hG4bK1"}))),
            ("From", "<sip:c@d.example>;tag=1"), ("To", "<sip:a@b.example>"),
            ("Call-ID", "x@y"), ("CSeq", str(CSeq(1, "OPTIONS"))),
        ])
        m = parseMessage(r.toBytes())
        self.assertEqual(m.topVia.port, 5060)
        self.assertEqual(m.cseq.method, "OPTIONS")
