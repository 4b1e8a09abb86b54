# -*- test-case-name: tests.test_sip_properties -*-
"""
Property-based tests of the message layer: generated valid messages
survive serialise/parse; random and mutated bytes yield a message or a
L{SIPParseError}, never any other exception.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from voipgw.sip import Request, SIPParseError
from voipgw.sip.message import Limits, _parseMessage

TORTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sip-torture")
SEEDS = sorted(
    open(os.path.join(TORTURE, sub, name), "rb").read()
    for sub in ("rfc4475", "rfc5118")
    for name in os.listdir(os.path.join(TORTURE, sub))
)
LIMITS = Limits()
SETTINGS = settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck))

ALPHA = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
token = st.text(ALPHA + "-.!%*_+`'~", min_size=1, max_size=12)
label = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
hostname = st.lists(label, min_size=1, max_size=3).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.sampled_from(["[2001:db8::1]", "[::1]", "[2001:db8::192.0.2.1]", "[fe80::a:b:c:d]"])
host = st.one_of(hostname, ipv4, ipv6)
port = st.one_of(st.none(), st.integers(1, 65535))
user = st.text(ALPHA + "-_.!~*'()&=+$,;?/", min_size=1, max_size=10)
uparam = st.tuples(st.text(ALPHA + "-", min_size=1, max_size=6), st.one_of(st.none(), st.text(ALPHA, min_size=1, max_size=6)))


@st.composite
def sipURIs(draw) -> str:  # type: ignore[no-untyped-def]
    text = draw(st.sampled_from(["sip:", "sips:"]))
    u = draw(st.one_of(st.none(), user))
    if u is not None:
        text += u + "@"
    text += draw(host)
    p = draw(port)
    if p is not None:
        text += f":{p}"
    for name, value in draw(st.lists(uparam, max_size=3, unique_by=lambda x: x[0].lower())):
        text += f";{name}" + (f"={value}" if value else "")
    return text


gparams = st.lists(
    st.tuples(token, st.one_of(st.none(), token, st.text(ALPHA + " ,;", max_size=8).map(lambda s: f'"{s}"'))),
    max_size=3, unique_by=lambda x: x[0].lower(),
)


def fmt(params: list[tuple[str, str | None]]) -> str:
    return "".join(f";{n}" + (f"={v}" if v is not None else "") for n, v in params)


@st.composite
def addresses(draw, tag: bool) -> str:  # type: ignore[no-untyped-def]
    display = draw(st.one_of(st.none(), st.text(ALPHA + " ,;<>@:", max_size=10).map(lambda s: f'"{s}" ')))
    params = [p for p in draw(gparams) if p[0].lower() != "tag"]
    if tag:
        params.append(("tag", draw(token)))
    return f"{display or ''}<{draw(sipURIs())}>{fmt(params)}"


@st.composite
def vias(draw) -> str:  # type: ignore[no-untyped-def]
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]))
    p = draw(port)
    params = [("branch", "z9hG4bK" + draw(token))] + [x for x in draw(gparams) if x[0].lower() != "branch"]
    if draw(st.booleans()):
        params.append(("rport", None))
    return f"SIP/2.0/{transport} {draw(host)}{'' if p is None else f':{p}'}{fmt(params)}"


METHODS = st.one_of(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE", "ACK", "CANCEL"]), token)


@st.composite
def messages(draw) -> bytes:  # type: ignore[no-untyped-def]
    isRequest = draw(st.booleans())
    method = draw(METHODS)
    if isRequest:
        start = f"{method} {draw(sipURIs())} SIP/2.0"
    else:
        start = f"SIP/2.0 {draw(st.integers(100, 699))} {draw(st.text(ALPHA + ' ', max_size=12))}"
    headers = [("Via", draw(vias())) for _ in range(draw(st.integers(1, 3)))]
    headers += [
        ("From", draw(addresses(True))), ("To", draw(addresses(draw(st.booleans())))),
        ("Call-ID", draw(token) + "@" + draw(hostname)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
    ]
    headers += [("Contact", draw(addresses(False))) for _ in range(draw(st.integers(0, 2)))]
    headers += [
        ("X-" + draw(token), draw(st.text(ALPHA + " ;,=\"<>:@", max_size=20)).strip())
        for _ in range(draw(st.integers(0, 3)))
    ]
    order = draw(st.permutations(headers))
    body = draw(st.binary(max_size=64))
    lines = [start] + [f"{n}: {v}" for n, v in order] + [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


def parseOrError(data: bytes, datagram: bool = True) -> None:
    """Parse, then touch every structured header: only SIPParseError may escape."""
    try:
        m = _parseMessage(data, LIMITS, datagram)
    except SIPParseError:
        return
    for attribute in ("vias", "fromAddress", "toAddress", "callId", "cseq", "contacts", "routes", "recordRoutes"):
        try:
            getattr(m, attribute)
        except SIPParseError:
            pass
    if isinstance(m, Request):
        for attribute in ("requestURI", "maxForwards"):
            try:
                getattr(m, attribute)
            except SIPParseError:
                pass
    m.toBytes()


class RoundTripProperties(SynchronousTestCase):
    @SETTINGS
    @given(messages())
    def test_roundTrip(self, data: bytes) -> None:
        m = _parseMessage(data, LIMITS, True)
        again = _parseMessage(m.toBytes(), LIMITS, False)
        self.assertEqual(again.headers, m.headers)
        self.assertEqual(again.body, m.body)
        self.assertEqual(again.startLine(), m.startLine())
        self.assertEqual([str(v) for v in again.vias], [str(v) for v in m.vias])
        self.assertEqual(again.fromAddress.tag, m.fromAddress.tag)
        self.assertEqual(str(again.toAddress), str(m.toAddress))
        self.assertEqual(again.toBytes(), m.toBytes())
        if isinstance(m, Request):
            self.assertTrue(again.requestURI.equivalent(m.requestURI))  # type: ignore[attr-defined]


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, pos, value in ops:
        if not out:
            break
        pos %= len(out)
        if kind == 0:
            out[pos] = value
        elif kind == 1:
            del out[pos:]
        elif kind == 2:
            out.insert(pos, value)
        elif kind == 3:
            start = out.rfind(b"\n", 0, pos) + 1
            end = out.find(b"\n", pos)
            line = out[start: end + 1 if end >= 0 else len(out)]
            out[start:start] = line
        else:
            del out[pos: pos + value % 8 + 1]
    return bytes(out)


mutations = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6)


class RobustnessProperties(SynchronousTestCase):
    @SETTINGS
    @given(st.binary(max_size=600), st.booleans())
    def test_randomBytes(self, data: bytes, datagram: bool) -> None:
        parseOrError(data, datagram)

    @SETTINGS
    @given(st.sampled_from(SEEDS), mutations, st.booleans())
    def test_mutatedTorture(self, data: bytes, ops: list[tuple[int, int, int]], datagram: bool) -> None:
        parseOrError(mutate(data, ops), datagram)

    @SETTINGS
    @given(messages(), mutations)
    def test_mutatedValid(self, data: bytes, ops: list[tuple[int, int, int]]) -> None:
        parseOrError(mutate(data, ops))

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.sampled_from([b"\r\n", b" ", b"\t", b":", b";", b",", b'"', b"<", b">", b"\\", b"%", b"[", b"]", b"@", b"SIP/2.0", b"sip:", b"Via", b"v", b"=", b"\x00", b"\xff"]), max_size=80))
    def test_tokenSoup(self, parts: list[bytes]) -> None:
        parseOrError(b"INVITE sip:a@b SIP/2.0\r\n" + b"".join(parts) + b"\r\n\r\n")
