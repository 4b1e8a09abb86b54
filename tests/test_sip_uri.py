# -*- test-case-name: tests.test_sip_uri -*-
"""SIP, SIPS, TEL and other URIs (RFC 3261 §19.1, RFC 5118)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from voipgw.sip import SIPParseError, URI
from voipgw.sip.uri import unescape


class ParseTests(SynchronousTestCase):
    def test_full(self) -> None:
        uri = URI.parse("sips:alice:secret@Atlanta.Example.com:5071;transport=TCP;lr?subject=hi&x=1")
        self.assertEqual(
            (uri.scheme, uri.user, uri.password, uri.host, uri.port),
            ("sips", "alice", "secret", "Atlanta.Example.com", 5071),
        )
        self.assertEqual(uri.params, {"transport": "TCP", "lr": None})
        self.assertEqual(uri.transport, "tcp")
        self.assertEqual(uri.headers, "subject=hi&x=1")
        self.assertEqual(str(uri), "sips:alice:secret@Atlanta.Example.com:5071;transport=TCP;lr?subject=hi&x=1")

    def test_schemeCaseInsensitive(self) -> None:
        self.assertEqual(URI.parse("SIP:bob@example.com").scheme, "sip")

    def test_escapes(self) -> None:
        uri = URI.parse("sip:I%20have%20spaces@example.net;n%61me=v%61lue%25%34%31")
        self.assertEqual(unescape(uri.user or ""), "I have spaces")
        self.assertEqual(uri.param("name"), "value%41")
        self.assertEqual(uri.aor(), "i have spaces@example.net")

    def test_badEscape(self) -> None:
        self.assertRaises(SIPParseError, URI.parse, "sip:a%zzb@example.com")
        self.assertRaises(SIPParseError, URI.parse, "sip:a%2@example.com")

    def test_ipv6(self) -> None:
        uri = URI.parse("sip:user@[2001:db8::10]:5070;maddr=[2001:db8::1]")
        self.assertEqual((uri.host, uri.port), ("[2001:db8::10]", 5070))
        self.assertEqual(uri.params["maddr"], "[2001:db8::1]")
        self.assertEqual(URI.parse("sip:[2001:db8::10:5070]").port, None)
        self.assertEqual(URI.parse("sip:[::ffff:192.0.2.1]").host, "[::ffff:192.0.2.1]")

    def test_badHosts(self) -> None:
        for bad in (
            "sip:2001:db8::10", "sip:u@[2001:db8:::1]", "sip:u@[2001:db8::1", "sip:u@[1:2:3:4:5:6:7:8:9]",
            "sip:u@[fe80::1%eth0]", "sip:u@256.1.1.1", "sip:u@exa mple.com", "sip:u@-bad.com",
            "sip:u@example.com:65536", "sip:u@example.com:５０６０", "sip:u@", "sip:u@host.123",
            "sip:u@ex_ample.com",
        ):
            self.assertRaises(SIPParseError, URI.parse, bad)

    def test_userPartCharacters(self) -> None:
        uri = URI.parse("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com")
        self.assertEqual(uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        self.assertRaises(SIPParseError, URI.parse, "sip:a<b@example.com")
        self.assertRaises(SIPParseError, URI.parse, "sip:@example.com")

    def test_params(self) -> None:
        self.assertRaises(SIPParseError, URI.parse, "sip:example.com;;lr")
        self.assertRaises(SIPParseError, URI.parse, "sip:example.com;a=")
        self.assertEqual(URI.parse("sip:example.com;LR").params, {"lr": None})

    def test_tel(self) -> None:
        uri = URI.parse("tel:+1-201-555-0123;phone-context=example.com")
        self.assertEqual((uri.scheme, uri.user), ("tel", "+1-201-555-0123"))
        self.assertEqual(uri.params, {"phone-context": "example.com"})
        self.assertTrue(uri.equivalent(URI.parse("tel:+12015550123")))
        self.assertRaises(SIPParseError, URI.parse, "tel:")
        self.assertRaises(SIPParseError, URI.parse, "tel:12 34")

    def test_otherSchemes(self) -> None:
        uri = URI.parse("nobodyKnowsThisScheme:totallyopaquecontent")
        self.assertEqual((uri.scheme, uri.opaque), ("nobodyknowsthisscheme", "totallyopaquecontent"))
        self.assertFalse(uri.isSIP)
        self.assertRaises(SIPParseError, URI.parse, "<sip:user@example.com>")
        self.assertRaises(SIPParseError, URI.parse, "http:a b")
        self.assertRaises(SIPParseError, URI.parse, "nocolon")

    def test_roundTrip(self) -> None:
        for text in (
            "sip:example.com", "sip:user@example.com:5060;transport=udp",
            "sips:u:p@[2001:db8::1];lr?h=v", "tel:+15551234;ext=1", "urn:service:sos",
        ):
            self.assertEqual(str(URI.parse(text)), text)

    def test_copy(self) -> None:
        uri = URI.parse("sip:a@b.example;lr")
        other = uri.copy(user="c")
        other.params["x"] = "1"
        self.assertEqual(str(uri), "sip:a@b.example;lr")
        self.assertEqual(str(other), "sip:c@b.example;lr;x=1")


class EquivalenceTests(SynchronousTestCase):
    """RFC 3261 §19.1.4: the equivalent and non-equivalent example lists."""

    EQUIVALENT = [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
    ]

    NOT_EQUIVALENT = [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        # Equality is not transitive (§19.1.4).
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ]

    def test_equivalent(self) -> None:
        for a, b in self.EQUIVALENT:
            self.assertTrue(URI.parse(a).equivalent(URI.parse(b)), (a, b))
            self.assertTrue(URI.parse(b).equivalent(URI.parse(a)), (b, a))

    def test_notEquivalent(self) -> None:
        for a, b in self.NOT_EQUIVALENT:
            self.assertFalse(URI.parse(a).equivalent(URI.parse(b)), (a, b))
            self.assertFalse(URI.parse(b).equivalent(URI.parse(a)), (b, a))

    def test_escapingNotRecursive(self) -> None:
        self.assertFalse(URI.parse("sip:a@b.com;x=%2541").equivalent(URI.parse("sip:a@b.com;x=A")))
        self.assertTrue(URI.parse("sip:a@b.com;%6Cr").equivalent(URI.parse("sip:a@b.com;lr")))
