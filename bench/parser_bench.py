#!/usr/bin/env python3
"""
Throughput of the SIP message layer on one core.

For a typical INVITE (with SDP), REGISTER (with Authorization) and 200 OK,
measures messages per second for:

  - parse: C{parseMessage} (which also validates the mandatory headers);
  - parse+proxy: parse, then read what a proxy touches (top Via and its
    branch, From tag, To tag, Call-ID, CSeq, Max-Forwards, Route);
  - serialise: C{toBytes} of an already parsed message.

Usage: python3 bench/parser_bench.py [--seconds N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from voipgw.sip import Request, parseMessage  # noqa: E402

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\n"
    b"s=-\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:+15551230000@carrier.example.net;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.12:5060;branch=z9hG4bK-524287-1---8d3f;received=203.0.113.9\r\n"
    b"Max-Forwards: 69\r\n"
    b"Route: <sip:edge1.example.net;lr>, <sip:core2.example.net;lr;transport=tcp>\r\n"
    b"Record-Route: <sip:198.51.100.7;lr>\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"To: <sip:+15551230000@carrier.example.net;user=phone>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@198.51.100.7:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer, 100rel\r\n"
    b"User-Agent: ExamplePhone/4.2\r\n"
    b"P-Asserted-Identity: <sip:+15550001111@example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.33:50123;branch=z9hG4bKnashds7;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:bob@example.com>;tag=a73kszlfl\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.33\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sip:bob@192.0.2.33:50123;transport=tcp>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"\r\n"
    b'Authorization: Digest username="bob", realm="example.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
    b'uri="sip:example.com", response="6629fae49393a05397450978507c4ef1", algorithm=MD5, '
    b'cnonce="0a4f113b", qop=auth, nc=00000001, opaque="5ccc069c403ebaf9f0171e9517f40e41"\r\n'
    b"User-Agent: ExamplePhone/4.2\r\n"
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

OK200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport=5060;received=198.51.100.7\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.12:5060;branch=z9hG4bK-524287-1---8d3f;received=203.0.113.9\r\n"
    b"Record-Route: <sip:198.51.100.7;lr>\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"To: <sip:+15551230000@carrier.example.net;user=phone>;tag=a6c85cf\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:gw3@203.0.113.50:5060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

MESSAGES = {"INVITE": INVITE, "REGISTER": REGISTER, "200 OK": OK200}


def proxyAccess(data: bytes) -> None:
    m = parseMessage(data)
    m.topVia.branch  # noqa: B018
    m.fromAddress.tag  # noqa: B018
    m.toAddress.tag  # noqa: B018
    m.callId  # noqa: B018
    m.cseq.number  # noqa: B018
    if isinstance(m, Request):
        m.maxForwards  # noqa: B018
        m.routes  # noqa: B018


def rate(func: Callable[[], object], seconds: float) -> float:
    """Calls per second of C{func}, best of three runs of about C{seconds}/3."""
    n = 1
    while True:  # calibrate
        start = time.perf_counter()
        for _ in range(n):
            func()
        elapsed = time.perf_counter() - start
        if elapsed > 0.05:
            break
        n *= 2
    per = max(1, int(n * (seconds / 3) / elapsed))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(per):
            func()
        best = max(best, per / (time.perf_counter() - start))
    return best


def run(seconds: float) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for name, data in MESSAGES.items():
        parsed = parseMessage(data)
        results[name] = {
            "parse": rate(lambda: parseMessage(data), seconds),
            "parse+proxy": rate(lambda: proxyAccess(data), seconds),
            "serialise": rate(parsed.toBytes, seconds),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    options = parser.parse_args(argv)
    results = run(options.seconds)
    print(f"{'message':10} {'parse':>12} {'parse+proxy':>12} {'serialise':>12}   (messages/s, one core)")
    for name, figures in results.items():
        print(
            f"{name:10} {figures['parse']:12,.0f} {figures['parse+proxy']:12,.0f} "
            f"{figures['serialise']:12,.0f}"
        )
    if options.json:
        with open(options.json, "w") as f:
            json.dump({"python": sys.version.split()[0], "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
