# -*- test-case-name: tests.test_dns -*-
"""
Locating SIP servers (RFC 3263) with twisted.names: NAPTR, then SRV, then
A/AAAA, giving the ordered list of addresses a request should try (the
proxy fails over along it on a timeout, a transport error or a 503).

The resolver (an C{IResolver}, e.g. C{twisted.names.client.Resolver}) is
injected; answers are cached for their TTL on the injected clock
(failures for C{negativeTTL} seconds).
"""

from __future__ import annotations

import random
from typing import Any, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import dns, error as dnsError

from voipgw.routing.target import addressOfURI, isIPAddress
from voipgw.sip.uri import URI
from voipgw.transport.address import Address

#: NAPTR services (RFC 3263 §4.1) -> our transport names
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
SRV_PREFIXES = {"udp": "_sip._udp.", "tcp": "_sip._tcp.", "tls": "_sips._tcp."}
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


class ResolutionFailed(LookupError):
    """No address could be found for a URI."""


class SIPResolver:
    """
    RFC 3263 server location over an injected C{IResolver}.

    @param transports: the transports this node can use, in preference order.
    """

    log = Logger()

    def __init__(self, resolver: Any, clock: Any, transports: tuple[str, ...] = ("udp", "tcp", "tls"),
                 negativeTTL: float = 30.0, maxTTL: float = 3600.0, rng: Optional[random.Random] = None) -> None:
        self.resolver = resolver
        self.clock = clock
        self.transports = transports
        self.negativeTTL = negativeTTL
        self.maxTTL = maxTTL
        self.rng = rng or random.Random()
        self._cache: dict[tuple[str, int], tuple[float, list[Any]]] = {}
        self.queries = 0
        self.hits = 0

    # -- cache -------------------------------------------------------------

    async def _query(self, name: str, qtype: int) -> list[Any]:
        """Payloads of C{qtype} records for C{name}, cached per TTL; C{[]} when there are none."""
        key = (name.lower(), qtype)
        now = self.clock.seconds()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self.hits += 1
            return cached[1]
        self.queries += 1
        lookup = {
            dns.NAPTR: self.resolver.lookupNamingAuthorityPointer,
            dns.SRV: self.resolver.lookupService,
            dns.A: self.resolver.lookupAddress,
            dns.AAAA: self.resolver.lookupIPV6Address,
        }[qtype]
        try:
            answers, _, _ = await lookup(name)
        except (dnsError.DomainError, dnsError.AuthoritativeDomainError):
            answers = []
        except defer.TimeoutError:
            raise
        except dnsError.DNSQueryRefusedError:
            answers = []
        records = [r for r in answers if r.type == qtype]
        payloads = [r.payload for r in records]
        ttl = min((r.ttl for r in records), default=self.negativeTTL) if records else self.negativeTTL
        self._cache[key] = (now + min(float(ttl), self.maxTTL), payloads)
        if len(self._cache) > 50_000:
            self._cache.clear()
        return payloads

    def clearCache(self) -> None:
        self._cache.clear()

    # -- RFC 3263 ------------------------------------------------------------

    def resolve(self, uri: URI) -> "defer.Deferred[list[Address]]":
        """The addresses to try for C{uri}, best first; fails with L{ResolutionFailed}."""
        return defer.ensureDeferred(self._resolve(uri))

    async def _resolve(self, uri: URI) -> list[Address]:
        address = addressOfURI(uri)
        if address is not None:
            return [address]
        host = uri.params.get("maddr") or uri.host
        explicit = uri.transport if uri.transport in ("udp", "tcp", "tls") else None
        if uri.scheme == "sips":
            explicit = "tls"
        if uri.port is not None:
            transport = explicit or "udp"
            result = await self._hosts(host, transport, uri.port)
        elif explicit is not None:
            result = await self._srv(SRV_PREFIXES[explicit] + host, explicit)
            if not result:
                result = await self._hosts(host, explicit, DEFAULT_PORTS[explicit])
        else:
            result = await self._naptr(host, secure=uri.scheme == "sips")
            if not result:
                for transport in ("udp", "tcp", "tls"):
                    if transport in self.transports:
                        result = await self._srv(SRV_PREFIXES[transport] + host, transport)
                        if result:
                            break
            if not result:
                result = await self._hosts(host, "udp" if "udp" in self.transports else self.transports[0], 5060)
        if not result:
            raise ResolutionFailed(f"no address for {host}")
        return result

    async def _naptr(self, host: str, secure: bool) -> list[Address]:
        records = await self._query(host, dns.NAPTR)
        usable = []
        for record in records:
            service = record.service.decode("ascii", "replace").upper() if isinstance(record.service, bytes) else str(record.service).upper()
            transport = NAPTR_SERVICES.get(service)
            flags = record.flags.decode("ascii", "replace").lower() if isinstance(record.flags, bytes) else str(record.flags).lower()
            if transport is None or transport not in self.transports or flags != "s":
                continue
            if secure and transport != "tls":
                continue
            usable.append((record.order, record.preference, transport, record.replacement.name.decode("ascii")))
        usable.sort(key=lambda r: (r[0], r[1]))
        for _, _, transport, name in usable:
            result = await self._srv(name, transport)
            if result:
                return result
        return []

    async def _srv(self, name: str, transport: str) -> list[Address]:
        records = await self._query(name, dns.SRV)
        addresses: list[Address] = []
        for record in self.orderSRV(records):
            target = record.target.name.decode("ascii")
            if target in ("", "."):
                continue
            addresses.extend(await self._hosts(target, transport, record.port))
        return addresses

    def orderSRV(self, records: list[Any]) -> list[Any]:
        """RFC 2782: by priority, and within one priority a weighted random order."""
        ordered: list[Any] = []
        for priority in sorted({r.priority for r in records}):
            group = [r for r in records if r.priority == priority]
            while group:
                total = sum(r.weight for r in group)
                if total == 0:
                    pick = group[0]
                else:
                    point = self.rng.uniform(0, total)
                    running = 0
                    pick = group[-1]
                    for r in group:
                        running += r.weight
                        if running >= point and r.weight > 0:
                            pick = r
                            break
                group.remove(pick)
                ordered.append(pick)
        return ordered

    async def _hosts(self, host: str, transport: str, port: int) -> list[Address]:
        if isIPAddress(host):
            return [Address(transport, host.strip("[]"), port)]
        found = [Address(transport, r.dottedQuad(), port) for r in await self._query(host, dns.A)]
        for r in await self._query(host, dns.AAAA):
            found.append(Address(transport, _ipv6(r.address), port))
        return found


def _ipv6(raw: bytes) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET6, raw)
