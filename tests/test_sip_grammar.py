# -*- test-case-name: tests.test_sip_grammar -*-
"""Lexical helpers of RFC 3261 §25: tokens, quoting, list and parameter splitting."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from voipgw.sip.grammar import (
    formatParams, isDigits, isQuotedString, isToken, parseParams, quote, quotedEnd,
    splitCommas, splitOutside, unquote,
)


class TokenTests(SynchronousTestCase):
    def test_tokens(self) -> None:
        self.assertTrue(isToken("INVITE"))
        self.assertTrue(isToken("!interesting-Method0123456789_*+`.%indeed'~"))
        for bad in ("", "a b", "a\n", "a,b", "a;b", 'a"', "a@b", "é"):
            self.assertFalse(isToken(bad), bad)

    def test_digits(self) -> None:
        """Only ASCII digits: Unicode digits would crash or fool int()."""
        self.assertTrue(isDigits("0068"))
        for bad in ("", "-1", "²", "١٢", "１２", "1 2"):
            self.assertFalse(isDigits(bad), bad)


class QuotingTests(SynchronousTestCase):
    def test_quotedEnd(self) -> None:
        self.assertEqual(quotedEnd('"ab" x', 0), 4)
        self.assertEqual(quotedEnd('"a\\"b" x', 0), 6)
        self.assertEqual(quotedEnd('"unterminated', 0), -1)
        self.assertEqual(quotedEnd('"ends in escape\\"', 0), -1)

    def test_isQuotedString(self) -> None:
        self.assertTrue(isQuotedString('"J Rosenberg \\\\\\""'))
        self.assertFalse(isQuotedString('"a" "b"'))
        self.assertFalse(isQuotedString('"a'))

    def test_unquoteQuote(self) -> None:
        self.assertEqual(unquote('"J Rosenberg \\\\\\""'), 'J Rosenberg \\"')
        self.assertEqual(unquote(quote('say "hi" \\ bye')), 'say "hi" \\ bye')
        self.assertEqual(unquote("token"), "token")


class SplittingTests(SynchronousTestCase):
    def test_commasInsideQuotesAndAngles(self) -> None:
        """§7.3.1: a comma inside a quoted string or <> does not separate values."""
        value = '"Bell, Alexander" <sip:a@b.example;x=1,2>;p=1, <sip:c@d.example>'
        self.assertEqual(
            splitCommas(value),
            ['"Bell, Alexander" <sip:a@b.example;x=1,2>;p=1', "<sip:c@d.example>"],
        )

    def test_anglesWithoutQuotes(self) -> None:
        self.assertEqual(
            splitOutside("<sip:a,b>,<sip:c>, d", ","), ["<sip:a,b>", "<sip:c>", " d"]
        )

    def test_escapedQuoteInsideQuotes(self) -> None:
        self.assertEqual(splitCommas('"a\\", b" <sip:x>, <sip:y>'), ['"a\\", b" <sip:x>', "<sip:y>"])

    def test_emptyElementsDropped(self) -> None:
        self.assertEqual(splitCommas(" a , ,b "), ["a", "b"])
        self.assertEqual(splitCommas("  "), [])


class ParamsTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """Names are case-insensitive (lower-cased); LWS around ; and = is allowed."""
        self.assertEqual(
            parseParams(" ; Tag = 1918 ;LR; q=0.5;x=\"a;b\""),
            {"tag": "1918", "lr": None, "q": "0.5", "x": '"a;b"'},
        )

    def test_ipv6Value(self) -> None:
        self.assertEqual(parseParams(";received=[2001:db8::9:255]"), {"received": "[2001:db8::9:255]"})

    def test_rejects(self) -> None:
        for bad in (";;", ";a;;b", ";=x", ";a=", ";a b=1", ";a=b c", ';a="open', ";a=<x>"):
            self.assertRaises(ValueError, parseParams, bad)

    def test_format(self) -> None:
        self.assertEqual(formatParams({"tag": "x", "lr": None}), ";tag=x;lr")
