"""
Test support for location stores: one behaviour contract, run against every
L{ILocationStore} implementation (the memory store, the partitioned MySQL
store, or an application's own store).

Mix L{LocationStoreTestsMixin} into a C{twisted.trial.unittest.TestCase}
whose C{setUp} sets C{self.store} and whose C{currentTime()} returns the time
the store's clock reads now.
"""

from __future__ import annotations

from typing import Any

from zope.interface.verify import verifyObject

from voipgw.interfaces import ILocationStore
from voipgw.location.binding import Binding


def makeBinding(aor: str, n: int = 0, expires: float = 3600.0, **kw: Any) -> Binding:
    """A realistic binding of C{aor}, the C{n}th device, expiring at C{expires}."""
    user = aor.split("@", 1)[0]
    fields: dict[str, Any] = dict(
        contact=f"sip:{user}@192.0.2.{n % 250 + 1}:{5060 + n};transport=udp;ob",
        callId=f"{n:08x}-a84b4c76e66710@198.51.100.7",
        cseq=n + 1,
        path=(f"<sip:edge{n % 3}.example.net;lr;ob>",),
        received=f"sip:203.0.113.{n % 250 + 1}:{40000 + n}",
        userAgent="Acme-Phone/2.1",
        socket="udp:10.0.0.1:5060",
        updated=expires - 3600.0,
        flags=n % 4,
    )
    fields.update(kw)
    return Binding(aor=aor, expires=expires, **fields)


class LocationStoreTestsMixin:
    """The L{ILocationStore} contract."""

    store: Any

    def currentTime(self) -> float:
        raise NotImplementedError

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(ILocationStore, self.store))  # type: ignore[attr-defined]

    async def test_saveLookup(self) -> None:
        now = self.currentTime()
        b = makeBinding("alice@example.com", 1, now + 3600, instanceId="<urn:uuid:1>", regId=1,
                        extra=(("x-tag", "1"),))
        await self.store.save(b)
        found = await self.store.lookup("alice@example.com", now)
        self.assertEqual(found, [b])  # type: ignore[attr-defined]
        self.assertEqual(await self.store.lookup("bob@example.com", now), [])  # type: ignore[attr-defined]

    async def test_replaceByKey(self) -> None:
        now = self.currentTime()
        aor = "carol@example.com"
        first = makeBinding(aor, 1, now + 60)
        second = first.evolve(expires=now + 120, cseq=first.cseq + 1, updated=now + 1)
        other = makeBinding(aor, 2, now + 60)
        await self.store.save(first)
        await self.store.save(other)
        await self.store.save(second)
        found = sorted(await self.store.lookup(aor, now), key=lambda b: b.contact)
        self.assertEqual(found, sorted([second, other], key=lambda b: b.contact))  # type: ignore[attr-defined]

    async def test_expiredNotReturned(self) -> None:
        now = self.currentTime()
        aor = "dave@example.com"
        live, dead = makeBinding(aor, 1, now + 100), makeBinding(aor, 2, now + 10)
        await self.store.save(live)
        await self.store.save(dead)
        self.assertEqual(await self.store.lookup(aor, now + 10), [live])  # type: ignore[attr-defined]
        self.assertEqual(await self.store.lookup(aor, now + 100), [])  # type: ignore[attr-defined]

    async def test_remove(self) -> None:
        now = self.currentTime()
        aor = "erin@example.com"
        a, b = makeBinding(aor, 1, now + 100), makeBinding(aor, 2, now + 100)
        await self.store.save(a)
        await self.store.save(b)
        self.assertTrue(await self.store.remove(aor, a.key))  # type: ignore[attr-defined]
        self.assertFalse(await self.store.remove(aor, a.key))  # type: ignore[attr-defined]
        self.assertEqual(await self.store.lookup(aor, now), [b])  # type: ignore[attr-defined]

    async def test_removeAll(self) -> None:
        now = self.currentTime()
        aor = "frank@example.com"
        for n in range(3):
            await self.store.save(makeBinding(aor, n, now + 100))
        await self.store.save(makeBinding("grace@example.com", 0, now + 100))
        self.assertEqual(await self.store.removeAll(aor), 3)  # type: ignore[attr-defined]
        self.assertEqual(await self.store.removeAll(aor), 0)  # type: ignore[attr-defined]
        self.assertEqual(await self.store.lookup(aor, now), [])  # type: ignore[attr-defined]
        self.assertEqual(len(await self.store.lookup("grace@example.com", now)), 1)  # type: ignore[attr-defined]

    async def test_expireAndCount(self) -> None:
        now = self.currentTime()
        for n in range(5):
            await self.store.save(makeBinding(f"u{n}@example.com", n, now + 10 + n))
        for n in range(4):
            await self.store.save(makeBinding(f"v{n}@example.com", n, now + 1000))
        self.assertEqual(await self.store.count(), 9)  # type: ignore[attr-defined]
        self.assertEqual(await self.store.expire(now + 12), 3)  # type: ignore[attr-defined]
        self.assertEqual(await self.store.expire(now + 12), 0)  # type: ignore[attr-defined]
        self.assertEqual(await self.store.count(), 6)  # type: ignore[attr-defined]
        self.assertEqual(await self.store.lookup("u4@example.com", now), [makeBinding("u4@example.com", 4, now + 14)])  # type: ignore[attr-defined]

    async def test_unicodeAndLongValues(self) -> None:
        now = self.currentTime()
        aor = "jos\u00e9@exampl\u00e9.com"
        b = makeBinding(aor, 7, now + 100, userAgent="\u00fcA " + "x" * 200,
                        path=("<sip:a;lr>", "<sip:b;lr>"), q=0.5)
        await self.store.save(b)
        self.assertEqual(await self.store.lookup(aor, now), [b])  # type: ignore[attr-defined]
