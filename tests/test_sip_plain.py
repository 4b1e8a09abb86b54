# -*- test-case-name: tests.test_sip_plain -*-
"""
The fast paths for the plain forms of Via, name-addr, SIP URI and generic
parameters agree with the general parsers: whenever a fast path answers
(anything but C{None}), the general parser gives an equal object or the
same error.
"""

from __future__ import annotations

from typing import Callable, Optional

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from voipgw.sip.address import (
    NameAddress, Via, _parseNameAddress, _parseVia, _plainNameAddress, _plainVia,
)
from voipgw.sip.errors import SIPParseError
from voipgw.sip.grammar import parseParams, plainParams
from voipgw.sip.uri import URI, _parseSIPGeneral, _plainSIP

SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))

#: Characters that matter to these grammars, plus ordinary ones.
SOUP = "abzAZ09.-_:;=@<>\"' \t/%[]?,+~*!\\#&$()é\x00"
#: Pieces of plain forms, and of what makes a form not plain.
PIECES = ["alice", "b1", "EXAMPLE", ".", "-", ":", "5060", "0", ";", "=", "@", "branch", "z9hG4bK7",
          "rport", "tag", "lr", "user", "phone", "[", "]", "%41", " ", "\t", '"', ">", "<", "?", "é",
          ",", "+", "/", "_"]
soup = st.one_of(
    st.text(SOUP, max_size=30),
    st.lists(st.sampled_from(PIECES), max_size=14).map("".join),
)


def uriFields(uri: Optional[URI]) -> object:
    if uri is None:
        return None
    return (uri.scheme, uri.user, uri.password, uri.host, uri.port, list(uri.params.items()),
            uri.headers, uri.opaque)


def viaFields(via: Via) -> object:
    return (via.transport, via.host, via.port, list(via.params.items()))


def addressFields(address: NameAddress) -> object:
    return (address.display, uriFields(address.uri), list(address.params.items()),
            address.wildcard, address.bracketed)


def outcome(parse: Callable[[str], object], text: str, fields: Callable[..., object]) -> object:
    """C{fields} of what C{parse} returns, or the error it raises; C{None} for no answer."""
    try:
        result = parse(text)
    except SIPParseError as e:
        return ("error", e.reason, e.status)
    return None if result is None else fields(result)


class PlainFormsAgree(SynchronousTestCase):
    @SETTINGS
    @given(st.sampled_from(["SIP/2.0/UDP ", "SIP/2.0/tcp ", "SIP/2.0/", "SIP/2.0/TLS 1.2.3.4"]), soup)
    @example("SIP/2.0/UDP ", "198.51.100.7:5060;branch=z9hG4bK776asdhds;rport")
    @example("SIP/2.0/UDP ", "1.2.3.400:5060;branch=z9hG4bK1")
    @example("SIP/2.0/UDP ", "host:99999;branch=z9hG4bK1")
    @example("SIP/2.0/UDP ", "host_1;branch=z9hG4bK1")
    @example("SIP/2.0/UDP ", "host;branch=;rport")
    def test_via(self, prefix: str, rest: str) -> None:
        text = prefix + rest
        plain = outcome(_plainVia, text, viaFields)
        if plain is not None:
            self.assertEqual(plain, outcome(_parseVia, text, viaFields))

    @SETTINGS
    @given(st.sampled_from(["<sip:", '"A b" <sip:', '"" <sips:', "<SIP:", "<tel:", "sip:"]), soup)
    @example("<sip:", "alice@example.com>;tag=1928301774")
    @example('"A b" <sip:', "a@b>;tag=1;Tag=2")
    @example("<sip:", "a@b>;tag=\"x\"")
    @example("<sip:", "a@b>;tag=")
    def test_nameAddress(self, prefix: str, rest: str) -> None:
        text = prefix + rest
        plain = outcome(_plainNameAddress, text, addressFields)
        if plain is not None:
            self.assertEqual(plain, outcome(_parseNameAddress, text, addressFields))

    @SETTINGS
    @given(soup)
    @example("+15551230000@carrier.example.net;user=phone")
    @example("host;x=a@b")
    @example("a@host:05060;lr")
    @example("a@host;lr=;x")
    def test_sipURI(self, rest: str) -> None:
        plain = outcome(lambda text: _plainSIP("sip", text), rest, uriFields)
        if plain is not None:
            self.assertEqual(plain, outcome(lambda text: _parseSIPGeneral("sip", text), rest, uriFields))

    @SETTINGS
    @given(soup)
    @example(";branch=z9hG4bK1;rport")
    @example(";received=[::1]")
    @example(";a=b=c")
    @example(";tag=")
    @example(";a=;b")
    def test_params(self, text: str) -> None:
        plain = plainParams(text, 0)
        if plain is not None:
            self.assertEqual(list(plain.items()), list(parseParams(text).items()))

    def test_plainFormsTaken(self) -> None:
        """The common forms do take the fast paths (else they gain nothing)."""
        self.assertIsNotNone(_plainVia("SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK7;rport"))
        self.assertIsNotNone(_plainNameAddress('"Alice" <sip:alice@example.com>;tag=19'))
        self.assertIsNotNone(_plainNameAddress("<sip:+1555@carrier.example.net;user=phone>"))
        self.assertIsNotNone(_plainSIP("sip", "bob@192.0.2.33:50123;transport=tcp"))

    def test_faultsLeftToTheGeneralParser(self) -> None:
        """Faults in the Via or the parameters are left to the general parser."""
        for text in ("SIP/2.0/UDP 1.2.3.400:5060", "SIP/2.0/UDP h;;x", "SIP/2.0/UDP h:"):
            self.assertIsNone(_plainVia(text))
            self.assertRaises(SIPParseError, Via.parse, text)
        for text in ("<sip:a@b>;;tag", '"A <sip:a@b>'):
            self.assertIsNone(_plainNameAddress(text))
            self.assertRaises(SIPParseError, NameAddress.parse, text)
