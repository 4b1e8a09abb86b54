# -*- test-case-name: tests.test_sip_torture -*-
"""
The RFC 4475 and RFC 5118 torture messages, byte-exact, against the
message layer.  Each test states what the RFC's own text for the message
asks of a parser (section numbers in the docstrings).

L{TORTURE_EXPECTATIONS} maps every file to C{(verdict, status)} for the
node-level tests of other components:

  - C{("accept", None)}: well-formed; an element processes it normally.
  - C{("reject", status)}: L{parseMessage} raises L{SIPParseError}; when
    the file is also in L{TORTURE_ANSWERABLE} the error carries the request
    and the element answers with C{status}; otherwise it drops the message
    (C{status} is C{None} when the RFC says to drop it silently).
  - C{("refuse", status)}: parses, but a proxy/registrar element must
    refuse it with C{status}; the test checks the value it will decide on.
"""

from __future__ import annotations

import os
from typing import Optional

from twisted.trial.unittest import SynchronousTestCase

from voipgw.sip import DigestParams, Request, Response, SIPParseError, parseMessage, responseTo
from voipgw.sip.uri import unescape

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(HERE, "data", "sip-torture")
SHARED_DIR = os.environ.get("VOIPGW_TORTURE_DIR") or os.path.join(
    HERE, "..", "..", "shared", "sip-torture"
)

TORTURE_EXPECTATIONS: dict[str, tuple[str, Optional[int]]] = {
    # RFC 4475 §3.1.1: valid messages a parser must accept.
    "wsinv.dat": ("accept", None),
    "intmeth.dat": ("accept", None),
    "esc01.dat": ("accept", None),
    "escnull.dat": ("accept", None),
    "esc02.dat": ("accept", None),
    "lwsdisp.dat": ("accept", None),
    "longreq.dat": ("accept", None),
    "dblreq.dat": ("accept", None),
    "semiuri.dat": ("accept", None),
    "transports.dat": ("accept", None),
    "mpart01.dat": ("accept", None),
    "unreason.dat": ("accept", None),
    "noreason.dat": ("accept", None),
    # RFC 4475 §3.1.2: invalid messages.
    "badinv01.dat": ("reject", 400),
    "clerr.dat": ("reject", 400),
    "ncl.dat": ("reject", 400),
    "scalar02.dat": ("reject", 400),
    "scalarlg.dat": ("reject", None),
    "quotbal.dat": ("reject", 400),
    "ltgtruri.dat": ("reject", 400),
    "lwsruri.dat": ("reject", 400),
    "lwsstart.dat": ("reject", 400),
    "trws.dat": ("reject", 400),
    "escruri.dat": ("reject", 400),
    # §3.1.2.12: the RFC lets an element ignore the bad Date; we do.
    "baddate.dat": ("accept", None),
    # §3.1.2.13: the message parses (Contact is parsed on demand); the
    # registrar reading the Contact gets a SIPParseError and answers 400.
    "regbadct.dat": ("refuse", 400),
    "badaspec.dat": ("reject", 400),
    "baddn.dat": ("reject", 400),
    "badvers.dat": ("reject", 505),
    "mismatch01.dat": ("reject", 400),
    "mismatch02.dat": ("reject", 501),
    "bigcode.dat": ("reject", None),
    # RFC 4475 §3.2: transaction layer.
    "badbranch.dat": ("accept", None),
    # RFC 4475 §3.3: application layer.
    "insuf.dat": ("reject", 400),
    "unkscm.dat": ("refuse", 416),
    "novelsc.dat": ("refuse", 416),
    "unksm2.dat": ("refuse", 400),
    "bext01.dat": ("refuse", 420),
    # §3.3.6 and §3.3.15: only a UAS refuses these (415, 406); a proxy forwards.
    "invut.dat": ("accept", None),
    "regaut01.dat": ("refuse", 401),
    "multi01.dat": ("reject", 400),
    "mcl01.dat": ("reject", 400),
    "bcast.dat": ("accept", None),
    "zeromf.dat": ("refuse", 483),
    "cparam01.dat": ("accept", None),
    "cparam02.dat": ("accept", None),
    "regescrt.dat": ("accept", None),
    "sdp01.dat": ("accept", None),
    # RFC 4475 §3.4: backward compatibility.
    "inv2543.dat": ("accept", None),
    # RFC 5118 §4.
    "ipv6-good": ("accept", None),
    "port-ambiguous": ("accept", None),
    "port-unambiguous": ("accept", None),
    "ipv6-bad": ("reject", 400),
    "via-received-param-with-delim": ("accept", None),
    "via-received-param-no-delim": ("accept", None),
    "ipv6-in-sdp": ("accept", None),
    "mult-ip-in-header": ("accept", None),
    "mult-ip-in-sdp": ("accept", None),
    "ipv4-mapped-ipv6": ("accept", None),
    "ipv6-bug-abnf-3-colons": ("reject", 400),
    "ipv6-correct-abnf-2-colons": ("accept", None),
}

#: Rejected files whose SIPParseError carries the request (a response can
#: be built: request line, usable top Via, From, To, Call-ID and CSeq).
TORTURE_ANSWERABLE = frozenset(
    [
        "badinv01.dat", "clerr.dat", "ncl.dat", "scalar02.dat", "quotbal.dat",
        "ltgtruri.dat", "lwsruri.dat", "lwsstart.dat", "trws.dat", "escruri.dat",
        "badaspec.dat", "baddn.dat", "badvers.dat", "mismatch01.dat", "mismatch02.dat",
        "multi01.dat", "mcl01.dat", "ipv6-bad", "ipv6-bug-abnf-3-colons",
    ]
)


def torturePath(name: str) -> str:
    """The path of a torture file in the repository's copy."""
    sub = "rfc4475" if name.endswith(".dat") else "rfc5118"
    return os.path.join(DATA_DIR, sub, name)


def tortureBytes(name: str) -> bytes:
    with open(torturePath(name), "rb") as f:
        return f.read()


def parseTorture(name: str, datagram: bool = True):  # type: ignore[no-untyped-def]
    return parseMessage(tortureBytes(name), datagram=datagram)


class TortureDataTests(SynchronousTestCase):
    def test_everyFileHasAnExpectation(self) -> None:
        """Every file of the copy is in the table, and every entry has a file."""
        files = set(os.listdir(os.path.join(DATA_DIR, "rfc4475"))) | set(
            os.listdir(os.path.join(DATA_DIR, "rfc5118"))
        )
        self.assertEqual(files, set(TORTURE_EXPECTATIONS))
        self.assertEqual(len(files), 49 + 12)
        self.assertTrue(TORTURE_ANSWERABLE <= set(TORTURE_EXPECTATIONS))

    def test_copyMatchesShared(self) -> None:
        """The copy in tests/data is byte-identical to ../shared when present."""
        if not os.path.isdir(SHARED_DIR):
            raise self.skipTest("no shared torture directory")  # type: ignore[attr-defined]
        for sub in ("rfc4475", "rfc5118"):
            shared = sorted(os.listdir(os.path.join(SHARED_DIR, sub)))
            self.assertEqual(shared, sorted(os.listdir(os.path.join(DATA_DIR, sub))))
            for name in shared:
                with open(os.path.join(SHARED_DIR, sub, name), "rb") as f:
                    self.assertEqual(f.read(), tortureBytes(name), name)

    def test_verdicts(self) -> None:
        """
        Each file parses or raises as its verdict says; rejected ones carry
        the request exactly when answerable, and the status the RFC names.
        """
        for name, (verdict, status) in sorted(TORTURE_EXPECTATIONS.items()):
            data = tortureBytes(name)
            if verdict == "reject":
                with self.assertRaises(SIPParseError, msg=name) as cm:
                    parseMessage(data)
                error = cm.exception
                self.assertTrue(error.reason, name)
                if name in TORTURE_ANSWERABLE:
                    self.assertIsInstance(error.request, Request, name)
                    self.assertEqual(error.status, status, name)
                    # A response can really be built and serialised.
                    response = responseTo(error.request, error.status)
                    self.assertEqual(len(response.getHeaderValues("Via")), len(error.request.getHeaderValues("Via")))
                    self.assertTrue(response.toBytes().startswith(b"SIP/2.0 %d " % status))
                else:
                    self.assertIsNone(error.request, name)
            else:
                message = parseMessage(data)
                self.assertEqual(parseMessage(message.toBytes()).toBytes(), message.toBytes(), name)


class ValidMessageTests(SynchronousTestCase):
    """RFC 4475 §3.1.1: valid messages and the values a parser must extract."""

    def test_wsinv(self) -> None:
        """§3.1.1.1: folding, odd whitespace, compact and mixed-case names."""
        m = parseTorture("wsinv.dat")
        assert isinstance(m, Request)
        self.assertEqual(m.method, "INVITE")
        self.assertEqual(m.requestURI.params, {"unknownparam": None})
        self.assertEqual(m.toAddress.uri.user, "vivekg")
        self.assertEqual(m.toAddress.tag, "1918181833n")
        self.assertEqual(m.fromAddress.display, 'J Rosenberg \\"')
        self.assertEqual(m.fromAddress.tag, "98asjd8")
        self.assertEqual(m.maxForwards, 68)
        self.assertEqual((m.cseq.number, m.cseq.method), (9, "INVITE"))
        self.assertEqual(m.callId, "wsinv.ndaksdj@192.0.2.1")
        self.assertEqual(m.getHeader("Subject"), "")
        self.assertEqual(
            m.getHeader("NewFangledHeader"), "newfangled value continued newfangled value"
        )
        self.assertEqual(m.getHeader("newfangledheader"), m.getHeader("NewFangledHeader"))
        self.assertEqual(m.getHeader("UnknownHeaderWithUnusualValue"), ";;,,;;,;")
        vias = m.vias
        self.assertEqual([v.transport for v in vias], ["UDP", "TCP", "UDP"])
        self.assertEqual([v.host for v in vias], ["192.0.2.2", "spindle.example.com", "192.168.255.111"])
        self.assertEqual([v.branch for v in vias], ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"])
        self.assertEqual(m.routes[0].uri.params, {"lr": None, "unknownwith": "value", "unknown-no-value": None})
        [contact] = m.contacts
        self.assertEqual(contact.display, 'Quoted string ""')
        self.assertEqual(contact.params, {"newparam": "newvalue", "secondparam": None, "q": "0.33"})
        self.assertEqual(len(m.body), 150)

    def test_intmeth(self) -> None:
        """§3.1.1.2: the full range of token and URI characters."""
        m = parseTorture("intmeth.dat")
        method = "!interesting-Method0123456789_*+`.%indeed'~"
        self.assertEqual(m.method, method)
        self.assertEqual(m.cseq.method, method)
        uri = m.requestURI
        self.assertEqual(uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        self.assertEqual(uri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        self.assertEqual(uri.host, "example.com")
        self.assertEqual(m.toAddress.display, "BEL:\x07 NUL:\x00 DEL:\x7f")
        self.assertEqual(m.toAddress.uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        self.assertEqual(m.fromAddress.display, "token1~` token2'+_ token3*%!.-")
        self.assertEqual(m.fromAddress.tag, "_token~1'+`*%!-.")
        self.assertEqual(m.fromAddress.params["fromparam''~+*_!.-%"], '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"')
        self.assertEqual(m.callId, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
        self.assertEqual(m.topVia.branch, "z9hG4bK-.!%66*_+`'~")
        self.assertEqual(m.getHeader("extensionHeader-!.%*+_`'~"), "\ufeff\u5927\u505c\u96fb")
        self.assertEqual(m.maxForwards, 255)

    def test_esc01(self) -> None:
        """§3.1.1.3: escapes in user parts and URI parameters."""
        m = parseTorture("esc01.dat")
        self.assertEqual(unescape(m.requestURI.user or ""), "sips:user@example.com")
        self.assertEqual(m.requestURI.host, "example.net")
        self.assertEqual(unescape(m.toAddress.uri.user or ""), "user")
        self.assertEqual(unescape(m.fromAddress.uri.user or ""), "I have spaces")
        [contact] = m.contacts
        self.assertEqual(unescape(contact.uri.user or ""), "caller")
        # Unescaping is never recursive: "value%41", not "valueA".
        self.assertEqual(contact.uri.param("name"), "value%41")
        self.assertIn("lr", contact.uri.unescapedParams())
        # "C:" is the compact form of Content-Type (names are case-insensitive).
        self.assertEqual(m.getHeader("Content-Type"), "application/sdp")

    def test_escnull(self) -> None:
        """§3.1.1.4: %00 in user parts is fine and unescapes to NUL."""
        m = parseTorture("escnull.dat")
        self.assertEqual(unescape(m.toAddress.uri.user or ""), "null-\x00-null")
        self.assertEqual(unescape(m.fromAddress.uri.user or ""), "null-\x00-null")
        self.assertEqual([unescape(c.uri.user or "") for c in m.contacts], ["\x00", "\x00\x00"])
        self.assertNotEqual(m.contacts[0].uri.aor(), m.contacts[1].uri.aor())

    def test_esc02(self) -> None:
        """§3.1.1.5: % that is not an escape; an escaped header name is unknown."""
        m = parseTorture("esc02.dat")
        self.assertEqual(m.method, "RE%47IST%45R")
        self.assertNotEqual(m.method, "REGISTER")
        self.assertEqual(m.toAddress.display, "%Z%45")
        self.assertEqual(m.fromAddress.display, "%Z%45")
        self.assertEqual(len(m.contacts), 2)
        self.assertEqual(m.getHeader("C%6Fntact"), "<sip:alias2@host2.example.com>")
        self.assertEqual(m.topVia.branch, "z9hG4bK209%fzsnel234")

    def test_lwsdisp(self) -> None:
        """§3.1.1.6: no LWS between display name and <."""
        m = parseTorture("lwsdisp.dat")
        self.assertEqual(m.fromAddress.display, "caller")
        self.assertEqual(m.fromAddress.tag, "323")

    def test_longreq(self) -> None:
        """§3.1.1.7: long values everywhere."""
        m = parseTorture("longreq.dat")
        to = m.toAddress
        self.assertEqual(to.display, "I have a user name of " + "extreme" * 10 + " proportion")
        self.assertEqual(to.uri.params["unknownparam1"], "very" + "long" * 20 + "value")
        self.assertEqual(to.uri.params["longparam" + "name" * 25], "shortvalue")
        self.assertIsNone(to.uri.params["very" + "long" * 25 + "parameternamewithnovalue"])
        frm = m.fromAddress
        self.assertEqual(frm.uri.user, "amazinglylongcallername" * 5)
        self.assertEqual(frm.params["unknownheaderparam" + "name" * 20], "unknowheaderparam" + "value" * 15)
        self.assertIsNone(frm.params["unknownvalueless" + "paramname" * 10])
        self.assertEqual(frm.tag, "12" + "982" * 50 + "424")
        self.assertEqual(m.callId, "longreq.one" + "really" * 20 + "longcallid")
        vias = m.vias
        self.assertEqual(len(vias), 34)
        self.assertEqual([v.host for v in vias[:33]], [f"sip{33 - i}.example.com" for i in range(33)])
        self.assertEqual(vias[33].branch, "very" + "long" * 50 + "branchvalue")
        self.assertEqual(m.contacts[0].uri.user, "amazinglylongcallername" * 5)

    def test_dblreq(self) -> None:
        """§3.1.1.8: a REGISTER followed by trailing octets: Content-Length 0 wins."""
        m = parseTorture("dblreq.dat")
        self.assertEqual(m.method, "REGISTER")
        self.assertEqual(m.body, b"")

    def test_semiuri(self) -> None:
        """§3.1.1.9: semicolons in the user part of the Request-URI."""
        m = parseTorture("semiuri.dat")
        uri = m.requestURI
        self.assertEqual(unescape(uri.user or ""), "user;par=u@example.net")
        self.assertEqual(uri.host, "example.com")
        self.assertEqual(uri.params, {})

    def test_transports(self) -> None:
        """§3.1.1.10: known and unknown Via transports."""
        m = parseTorture("transports.dat")
        self.assertEqual([v.transport for v in m.vias], ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"])

    def test_mpart01(self) -> None:
        """§3.1.1.11: a multipart body of exactly Content-Length octets."""
        data = tortureBytes("mpart01.dat")
        m = parseMessage(data)
        self.assertEqual(len(m.body), int(m.getHeader("Content-Length") or "-1"))
        self.assertTrue(data.endswith(m.body))

    def test_unreason(self) -> None:
        """§3.1.1.12: a UTF-8 reason phrase."""
        m = parseTorture("unreason.dat")
        assert isinstance(m, Response)
        self.assertEqual(m.code, 200)
        self.assertEqual(
            m.reason,
            "= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e\u0441\u0442\u043e"
            " \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441\u0442\u043e\u0435",
        )

    def test_noreason(self) -> None:
        """§3.1.1.13: an empty reason phrase."""
        m = parseTorture("noreason.dat")
        assert isinstance(m, Response)
        self.assertEqual((m.code, m.reason), (100, ""))


class InvalidMessageTests(SynchronousTestCase):
    """RFC 4475 §3.1.2: the fault each invalid message must be rejected for."""

    def assertRejected(self, name: str, status: int, words: str, datagram: bool = True) -> SIPParseError:
        with self.assertRaises(SIPParseError) as cm:
            parseTorture(name, datagram)
        self.assertEqual(cm.exception.status, status)
        self.assertIn(words, cm.exception.reason)
        return cm.exception

    def test_badinv01(self) -> None:
        """§3.1.2.1: extraneous ;;,;,, in Via -> 400; the top Via still routes the answer."""
        e = self.assertRejected("badinv01.dat", 400, "Via")
        assert isinstance(e.request, Request)
        self.assertEqual(e.request.topVia.host, "192.0.2.15")

    def test_clerr(self) -> None:
        """§3.1.2.2: Content-Length larger than the datagram's body -> 400."""
        self.assertRejected("clerr.dat", 400, "Content-Length")

    def test_ncl(self) -> None:
        """§3.1.2.3: negative Content-Length -> 400."""
        self.assertRejected("ncl.dat", 400, "Content-Length")

    def test_scalar02(self) -> None:
        """§3.1.2.4: overlarge CSeq (and Max-Forwards, Expires) -> 400 for the CSeq."""
        self.assertRejected("scalar02.dat", 400, "CSeq")

    def test_scalarlg(self) -> None:
        """§3.1.2.5: a response with overlarge values is discarded (not answerable)."""
        e = self.assertRejected("scalarlg.dat", 400, "CSeq")
        self.assertIsNone(e.request)

    def test_quotbal(self) -> None:
        """§3.1.2.6: unterminated quoted display name in To -> 400."""
        self.assertRejected("quotbal.dat", 400, "To")

    def test_ltgtruri(self) -> None:
        """§3.1.2.7: <> around the Request-URI -> 400."""
        self.assertRejected("ltgtruri.dat", 400, "URI")

    def test_lwsruri(self) -> None:
        """§3.1.2.8: LWS inside the Request-URI -> 400."""
        self.assertRejected("lwsruri.dat", 400, "Request-URI")

    def test_lwsstart(self) -> None:
        """§3.1.2.9: multiple SP between request-line elements -> 400."""
        self.assertRejected("lwsstart.dat", 400, "request line")

    def test_trws(self) -> None:
        """§3.1.2.10: SP after the SIP-Version -> 400."""
        self.assertRejected("trws.dat", 400, "request line")

    def test_escruri(self) -> None:
        """§3.1.2.11: escaped headers in the Request-URI -> 400."""
        self.assertRejected("escruri.dat", 400, "Request-URI")

    def test_baddate(self) -> None:
        """§3.1.2.12: the element may ignore the non-GMT Date; it passes through."""
        m = parseTorture("baddate.dat")
        self.assertEqual(m.getHeader("Date"), "Fri, 01 Jan 2010 16:00:00 EST")
        self.assertIn(b"\r\nDate: Fri, 01 Jan 2010 16:00:00 EST\r\n", m.toBytes())

    def test_regbadct(self) -> None:
        """§3.1.2.13: Contact with escaped headers outside <>: the registrar's 400."""
        m = parseTorture("regbadct.dat")
        with self.assertRaises(SIPParseError) as cm:
            m.contacts  # noqa: B018
        self.assertIn("<>", cm.exception.reason)

    def test_badaspec(self) -> None:
        """§3.1.2.14: spaces inside <> around the To URI -> 400."""
        self.assertRejected("badaspec.dat", 400, "To")

    def test_baddn(self) -> None:
        """§3.1.2.15: unquoted non-token display names -> 400."""
        self.assertRejected("baddn.dat", 400, "display name")

    def test_badvers(self) -> None:
        """§3.1.2.16: SIP/7.0 -> 505, answerable."""
        e = self.assertRejected("badvers.dat", 505, "version")
        assert isinstance(e.request, Request)
        self.assertEqual(e.request.callId, "badvers.31417@c.example.com")

    def test_mismatch01(self) -> None:
        """§3.1.2.17: CSeq method differs from the request method -> 400."""
        self.assertRejected("mismatch01.dat", 400, "CSeq method")

    def test_mismatch02(self) -> None:
        """§3.1.2.18: unknown method and mismatched CSeq -> 501 preferred."""
        self.assertRejected("mismatch02.dat", 501, "CSeq method")

    def test_bigcode(self) -> None:
        """§3.1.2.19: a status code above 699 is dropped."""
        e = self.assertRejected("bigcode.dat", 400, "status code")
        self.assertIsNone(e.request)


class SemanticsTests(SynchronousTestCase):
    """RFC 4475 §3.2-3.4: messages that parse; what the element decides on."""

    def test_badbranch(self) -> None:
        """§3.2.1: branch of only the magic cookie parses."""
        m = parseTorture("badbranch.dat")
        self.assertEqual(m.topVia.branch, "z9hG4bK")

    def test_insuf(self) -> None:
        """§3.3.1: missing Call-ID, From, To -> rejected, not answerable here."""
        with self.assertRaises(SIPParseError) as cm:
            parseTorture("insuf.dat")
        self.assertEqual(cm.exception.status, 400)
        for name in ("From", "To", "Call-ID"):
            self.assertIn(name, cm.exception.reason)
        self.assertIsNone(cm.exception.request)

    def test_unkscm(self) -> None:
        """§3.3.2: unknown Request-URI scheme parses; the element answers 416."""
        m = parseTorture("unkscm.dat")
        self.assertEqual(m.requestURI.scheme, "nobodyknowsthisscheme")
        self.assertFalse(m.requestURI.isSIP)
        self.assertTrue(m.toAddress.uri.isSIP)

    def test_novelsc(self) -> None:
        """§3.3.3: a registered but atypical scheme (soap.beep): 416."""
        m = parseTorture("novelsc.dat")
        self.assertEqual(m.requestURI.scheme, "soap.beep")

    def test_unksm2(self) -> None:
        """§3.3.4: non-SIP schemes in To/From/Contact parse; a registrar says 400."""
        m = parseTorture("unksm2.dat")
        self.assertEqual(m.method, "REGISTER")
        self.assertEqual(m.toAddress.uri.scheme, "isbn")
        self.assertEqual(m.fromAddress.uri.scheme, "http")
        self.assertEqual(m.contacts[0].uri.scheme, "name")

    def test_bext01(self) -> None:
        """§3.3.5: Require / Proxy-Require values the element answers 420 to."""
        m = parseTorture("bext01.dat")
        self.assertEqual(
            m.getHeaderValues("Require"), ["nothingSupportsThis", "nothingSupportsThisEither"]
        )
        self.assertEqual(m.getHeaderValues("Proxy-Require"), ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"])

    def test_invut(self) -> None:
        """§3.3.6: a body of unknown type parses; only a UAS says 415."""
        m = parseTorture("invut.dat")
        self.assertEqual(m.getHeader("Content-Type"), "application/unknownformat")
        self.assertEqual(len(m.body), int(m.getHeader("Content-Length") or "0"))

    def test_regaut01(self) -> None:
        """§3.3.7: an unknown authorization scheme parses; a registrar says 401."""
        m = parseTorture("regaut01.dat")
        credentials = DigestParams.parse(m.getHeader("Authorization") or "")
        self.assertEqual(credentials.scheme, "NoOneKnowsThisScheme")
        self.assertEqual(credentials.params, {"opaque-data": "here"})

    def test_multi01(self) -> None:
        """§3.3.8: several values in single-valued headers -> 400."""
        with self.assertRaises(SIPParseError) as cm:
            parseTorture("multi01.dat")
        for name in ("Call-ID", "To", "From", "Max-Forwards", "CSeq"):
            self.assertIn(name, cm.exception.reason)
        # The answer copies one of each.
        assert isinstance(cm.exception.request, Request)
        response = responseTo(cm.exception.request, 400)
        self.assertEqual(len([n for n, _ in response.headers if n == "To"]), 1)

    def test_mcl01(self) -> None:
        """§3.3.9: conflicting Content-Length values -> 400."""
        with self.assertRaises(SIPParseError) as cm:
            parseTorture("mcl01.dat")
        self.assertIn("Content-Length", cm.exception.reason)
        self.assertEqual(cm.exception.status, 400)

    def test_bcast(self) -> None:
        """§3.3.10: a response whose second Via is a broadcast address."""
        m = parseTorture("bcast.dat")
        self.assertEqual(m.vias[1].host, "255.255.255.255")

    def test_zeromf(self) -> None:
        """§3.3.11: Max-Forwards 0 is legal; a proxy answers 483."""
        m = parseTorture("zeromf.dat")
        self.assertEqual(m.maxForwards, 0)

    def test_cparam01(self) -> None:
        """§3.3.12: the parameter after an addr-spec is a contact-param."""
        m = parseTorture("cparam01.dat")
        [contact] = m.contacts
        self.assertFalse(contact.bracketed)
        self.assertEqual(contact.params, {"unknownparam": None})
        self.assertEqual(contact.uri.params, {})

    def test_cparam02(self) -> None:
        """§3.3.13: the parameter inside <> is a URI parameter."""
        m = parseTorture("cparam02.dat")
        [contact] = m.contacts
        self.assertEqual(contact.uri.params, {"unknownparam": None})
        self.assertEqual(contact.params, {})

    def test_regescrt(self) -> None:
        """§3.3.14: a Contact URI with an escaped header, kept as is."""
        m = parseTorture("regescrt.dat")
        [contact] = m.contacts
        self.assertEqual(contact.uri.headers, "Route=%3Csip:sip.example.com%3E")
        self.assertEqual(unescape(contact.uri.headers or ""), "Route=<sip:sip.example.com>")

    def test_sdp01(self) -> None:
        """§3.3.15: an Accept without application/sdp; only a UAS refuses."""
        m = parseTorture("sdp01.dat")
        self.assertEqual(m.getHeaderValues("Accept"), ["text/nobodyKnowsThis"])

    def test_inv2543(self) -> None:
        """§3.4.1: RFC 2543 syntax: no branch, no From tag, no Content-Length, no Max-Forwards."""
        data = tortureBytes("inv2543.dat")
        m = parseMessage(data, datagram=True)
        self.assertIsNone(m.topVia.branch)
        self.assertIsNone(m.fromAddress.tag)
        self.assertIsNone(m.getHeader("Content-Length"))
        self.assertIsNone(m.maxForwards)
        self.assertTrue(m.body.startswith(b"v=0\r\n"))
        self.assertTrue(data.endswith(m.body))
        # On a stream the missing Content-Length is an error.
        self.assertRaises(SIPParseError, parseMessage, data, datagram=False)


class IPv6Tests(SynchronousTestCase):
    """RFC 5118 §4."""

    def test_ipv6Good(self) -> None:
        m = parseTorture("ipv6-good")
        self.assertEqual((m.requestURI.host, m.requestURI.port), ("[2001:db8::10]", None))
        self.assertEqual(m.topVia.host, "[2001:db8::9:1]")
        self.assertEqual(m.contacts[0].uri.host, "[2001:db8::1]")

    def test_portAmbiguous(self) -> None:
        """§4.2: the last group inside the brackets is part of the address."""
        m = parseTorture("port-ambiguous")
        self.assertEqual((m.requestURI.host, m.requestURI.port), ("[2001:db8::10:5070]", None))

    def test_portUnambiguous(self) -> None:
        m = parseTorture("port-unambiguous")
        self.assertEqual((m.requestURI.host, m.requestURI.port), ("[2001:db8::10]", 5070))

    def test_ipv6Bad(self) -> None:
        """§4.4: an IPv6 address without brackets in the Request-URI -> 400."""
        with self.assertRaises(SIPParseError) as cm:
            parseTorture("ipv6-bad")
        self.assertEqual(cm.exception.status, 400)
        self.assertIn("URI", cm.exception.reason)

    def test_receivedWithDelimiters(self) -> None:
        m = parseTorture("via-received-param-with-delim")
        self.assertEqual(m.topVia.received, "[2001:db8::9:255]")
        self.assertEqual(m.topVia.branch, "z9hG4bKas3-111")

    def test_receivedWithoutDelimiters(self) -> None:
        m = parseTorture("via-received-param-no-delim")
        self.assertEqual(m.topVia.received, "2001:db8::9:255")
        self.assertEqual(m.topVia.branch, "z9hG4bKas3")

    def test_multipleAddresses(self) -> None:
        m = parseTorture("mult-ip-in-header")
        self.assertEqual(
            [(v.host, v.port) for v in m.vias],
            [("[2001:db8::9:1]", 6050), ("192.0.2.1", None), ("[2001:db8::9:255]", None)],
        )
        self.assertEqual(m.vias[2].received, "192.0.2.200")

    def test_sdpBodies(self) -> None:
        for name in ("ipv6-in-sdp", "mult-ip-in-sdp"):
            m = parseTorture(name)
            self.assertIn(b"IP6", m.body)
            self.assertEqual(len(m.body), int(m.getHeader("Content-Length") or "-1"))

    def test_ipv4Mapped(self) -> None:
        m = parseTorture("ipv4-mapped-ipv6")
        self.assertEqual((m.topVia.host, m.topVia.port), ("[::ffff:192.0.2.10]", 19823))
        self.assertEqual(m.contacts[0].uri.host, "[::ffff:192.0.2.2]")

    def test_threeColons(self) -> None:
        """§4.10: the RFC 3261 ABNF bug: ':::' is not an IPv6 address."""
        with self.assertRaises(SIPParseError) as cm:
            parseTorture("ipv6-bug-abnf-3-colons")
        self.assertIn("IPv6", cm.exception.reason)

    def test_twoColons(self) -> None:
        m = parseTorture("ipv6-correct-abnf-2-colons")
        self.assertEqual(m.requestURI.host, "[2001:db8::192.0.2.1]")
        self.assertEqual(m.toAddress.uri.host, "[2001:db8::192.0.2.1]")
