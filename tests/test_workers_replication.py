"""Tests for L{voipgw.workers.replication}: location replication between workers."""

from __future__ import annotations

import marshal
import os
import tempfile
from typing import Any

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from voipgw.location.memory import MemoryLocationStore
from voipgw.location.testing import makeBinding
from voipgw.workers.replication import (
    BULK_CHUNK,
    FLUSH_INTERVAL,
    ReplicatedLocationStore,
    ReplicationChannel,
    bindingFromTuple,
    bindingToTuple,
)

NOW = 1_700_000_000.0


class RecordingChannel:
    """Stands in for a L{ReplicationChannel}: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.onMessage: Any = None

    def sendBuffered(self, message: tuple) -> None:
        # what crosses the socket is marshal-encoded: check it survives that
        self.sent.append(marshal.loads(marshal.dumps(message)))


class BindingEncodingTests(TestCase):
    def test_roundTrip(self) -> None:
        binding = makeBinding("alice@example.com", 3, expires=NOW + 60, instanceId="<urn:uuid:1>", regId=2,
                              extra=(("ob", ""), ("x", "y")))
        values = marshal.loads(marshal.dumps(bindingToTuple(binding)))
        self.assertEqual(bindingFromTuple(values), binding)

    def test_shorterTupleTakesDefaults(self) -> None:
        """A tuple without the trailing fields (an older peer) still decodes."""
        binding = makeBinding("alice@example.com", expires=NOW + 60, extra=())
        values = bindingToTuple(binding)[:-1]
        self.assertEqual(bindingFromTuple(values), binding)


class BatchingTests(TestCase):
    """Changes leave in batches: at once after a quiet spell, at most every FLUSH_INTERVAL under load."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.inner = MemoryLocationStore(self.clock)
        self.store = ReplicatedLocationStore(self.inner, self.clock)
        self.channel = RecordingChannel()
        self.store.attach(self.channel)  # type: ignore[arg-type]

    def savedAORs(self) -> list[list[str]]:
        return [[item[1][0] for item in message[1]] for message in self.channel.sent]

    def test_quietChangeLeavesOnNextTurn(self) -> None:
        self.store.save(makeBinding("a@example.com", expires=NOW + 60))
        self.store.save(makeBinding("b@example.com", expires=NOW + 60))
        self.assertEqual(self.channel.sent, [])
        self.clock.advance(0)
        self.assertEqual(self.savedAORs(), [["a@example.com", "b@example.com"]])

    def test_sustainedChangesWaitForTheInterval(self) -> None:
        self.store.save(makeBinding("a@example.com", expires=NOW + 60))
        self.clock.advance(0)
        self.clock.advance(FLUSH_INTERVAL / 5)
        self.store.save(makeBinding("b@example.com", expires=NOW + 60))
        self.clock.advance(0)
        self.store.save(makeBinding("c@example.com", expires=NOW + 60))
        self.assertEqual(self.savedAORs(), [["a@example.com"]])
        self.clock.advance(FLUSH_INTERVAL)
        self.assertEqual(self.savedAORs(), [["a@example.com"], ["b@example.com", "c@example.com"]])
        # quiet again: the next change does not wait
        self.clock.advance(FLUSH_INTERVAL * 2)
        self.store.save(makeBinding("d@example.com", expires=NOW + 60))
        self.clock.advance(0)
        self.assertEqual(self.savedAORs()[-1], ["d@example.com"])

    def test_fullBatchLeavesAtOnce(self) -> None:
        self.store.save(makeBinding("first@example.com", expires=NOW + 60))
        self.clock.advance(0)
        for i in range(BULK_CHUNK):
            self.store.save(makeBinding(f"u{i}@example.com", expires=NOW + 60))
        self.assertEqual(len(self.channel.sent), 2)
        self.assertEqual(len(self.channel.sent[1][1]), BULK_CHUNK)
        self.clock.advance(FLUSH_INTERVAL)
        self.assertEqual(len(self.channel.sent), 2, "no empty batch is sent")

    def test_orderKept(self) -> None:
        binding = makeBinding("a@example.com", expires=NOW + 60)
        self.store.save(binding)
        self.store.remove("a@example.com", binding.key)
        self.store.removeAll("b@example.com")
        self.clock.advance(0)
        [batch] = self.channel.sent
        self.assertEqual([item[0] for item in batch[1]], ["save", "remove", "removeAll"])


class ApplyTests(TestCase):
    """What a worker does with its peers' changes."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.inner = MemoryLocationStore(self.clock)
        self.store = ReplicatedLocationStore(self.inner, self.clock)

    def lookup(self, aor: str) -> list:
        return self.successResultOf(self.inner.lookup(aor, self.clock.seconds()))

    def test_saveApplied(self) -> None:
        binding = makeBinding("a@example.com", expires=NOW + 60, updated=NOW)
        self.store.receive(("batch", [("save", bindingToTuple(binding))]))
        self.assertEqual(self.lookup("a@example.com"), [binding])
        self.assertEqual(self.store.applied, 1)

    def test_lateOlderSaveIgnored(self) -> None:
        newer = makeBinding("a@example.com", expires=NOW + 60, updated=NOW, cseq=5)
        older = makeBinding("a@example.com", expires=NOW + 30, updated=NOW - 1, cseq=4)
        self.successResultOf(self.inner.save(newer))
        self.store.receive(("save", bindingToTuple(older)))
        self.assertEqual(self.lookup("a@example.com"), [newer])
        self.assertEqual(self.store.applied, 0)

    def test_newerSaveReplaces(self) -> None:
        older = makeBinding("a@example.com", expires=NOW + 30, updated=NOW - 1, cseq=4)
        newer = makeBinding("a@example.com", expires=NOW + 60, updated=NOW, cseq=5)
        self.successResultOf(self.inner.save(older))
        self.store.receive(("save", bindingToTuple(newer)))
        self.assertEqual(self.lookup("a@example.com"), [newer])

    def test_expiredSaveIgnored(self) -> None:
        binding = makeBinding("a@example.com", expires=NOW - 1, updated=NOW - 61)
        self.store.receive(("bulk", [bindingToTuple(binding)]))
        self.assertEqual(self.lookup("a@example.com"), [])
        self.assertEqual(self.successResultOf(self.inner.count()), 0)

    def test_removeApplied(self) -> None:
        binding = makeBinding("a@example.com", expires=NOW + 60)
        self.successResultOf(self.inner.save(binding))
        self.store.receive(("batch", [("remove", "a@example.com", binding.key)]))
        self.assertEqual(self.lookup("a@example.com"), [])

    def test_batchAppliedInOrder(self) -> None:
        """A batch's saves and removes apply in order; late, expired and malformed items are skipped."""
        a1 = makeBinding("a@example.com", 1, expires=NOW + 60, updated=NOW)
        a2 = makeBinding("a@example.com", 2, expires=NOW + 60, updated=NOW)
        stale = makeBinding("a@example.com", 2, expires=NOW + 90, updated=NOW - 5)
        expired = makeBinding("c@example.com", expires=NOW - 1, updated=NOW - 61)
        b = makeBinding("b@example.com", expires=NOW + 60, updated=NOW)
        self.store.receive(("batch", [
            ("save", bindingToTuple(a1)), ("save", bindingToTuple(a2)), ("remove", "a@example.com", a1.key),
            ("save", bindingToTuple(stale)), ("save", bindingToTuple(expired)), (), "junk", ("bogus", 1),
            ("save", bindingToTuple(b)), ("removeAll", "b@example.com"),
        ]))
        self.assertEqual(self.lookup("a@example.com"), [a2])
        self.assertEqual(self.lookup("b@example.com"), [])
        self.assertEqual(self.lookup("c@example.com"), [])
        self.assertEqual(self.store.applied, 5)

    def test_batchWithoutSaveIfNewer(self) -> None:
        """An inner store without C{saveIfNewer} still gets a batch's saves, newer-wins."""

        class Plain:
            def __init__(self, inner: MemoryLocationStore) -> None:
                self.inner = inner

            def lookup(self, aor: str, now: float) -> Any:
                return self.inner.lookup(aor, now)

            def save(self, binding: Any) -> Any:
                return self.inner.save(binding)

        self.store.inner = Plain(self.inner)
        newer = makeBinding("a@example.com", expires=NOW + 60, updated=NOW, cseq=5)
        older = makeBinding("a@example.com", expires=NOW + 30, updated=NOW - 1, cseq=4)
        self.store.receive(("batch", [("save", bindingToTuple(newer)), ("save", bindingToTuple(older))]))
        self.assertEqual(self.lookup("a@example.com"), [newer])
        self.assertEqual(self.store.applied, 1)


class ChannelTests(TestCase):
    """Two workers' stores over real Unix datagram sockets."""

    def setUp(self) -> None:
        self.runDir = tempfile.mkdtemp(prefix="voipgw-repl-")
        self.addCleanup(lambda: os.path.isdir(self.runDir) and os.rmdir(self.runDir))
        self.stores = []
        for index in range(2):
            store = ReplicatedLocationStore(MemoryLocationStore(reactor), reactor)
            channel = ReplicationChannel(self.runDir, index, 2, store.receive)
            store.attach(channel)
            channel.listen(reactor)
            self.addCleanup(channel.close)
            self.stores.append(store)

    async def waitFor(self, condition: Any, timeout: float = 5.0) -> None:
        for _ in range(int(timeout / 0.01)):
            if condition():
                return
            await task.deferLater(reactor, 0.01, lambda: None)
        self.fail("condition not met in time")

    async def test_saveReachesThePeer(self) -> None:
        now = reactor.seconds()
        bindings = [makeBinding(f"u{i}@example.com", expires=now + 60, updated=now) for i in range(250)]
        for binding in bindings:
            await self.stores[0].save(binding)
        peer = self.stores[1].inner
        await self.waitFor(lambda: self.stores[1].applied == len(bindings))
        found = await peer.lookup("u249@example.com", reactor.seconds())
        self.assertEqual(found, [bindings[-1]])
        self.assertEqual(self.stores[0].channel.dropped, 0)

    async def test_syncSendsTheTable(self) -> None:
        now = reactor.seconds()
        for i in range(BULK_CHUNK + 5):
            await self.stores[0].inner.save(makeBinding(f"u{i}@example.com", expires=now + 60, updated=now))
        self.stores[1].requestSync()
        await self.waitFor(lambda: self.stores[1].applied == BULK_CHUNK + 5)
        self.assertEqual(await self.stores[1].inner.count(), BULK_CHUNK + 5)

