"""The consumer tells its handler side when a shard is acquired and lost, and stops a shard whose
lease it could not renew for the lease timeout (the KCL's rule: others may hold it by then)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from streams.consumer import Consumer
from streams.delivery import Batch, Delivered
from streams.leases import Lease
from streams.log import Shard
from streams.sqlite_leases import SQLiteLeaseStore
from streams.sqlite_log import SQLiteLog
from tests.streams.test_consumer import checkpointed, eventually, last_per_shard, posts

LEASE_TIMEOUT_S = 1.0


class Outage(ConnectionError):
    pass


class FlakyLeases:
    """A SQLiteLeaseStore that refuses every call with an error while `down` (an outage)."""

    def __init__(self, inner: SQLiteLeaseStore) -> None:
        self.inner = inner
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Outage("the lease store does not answer")

    async def ensure(self, shards: Sequence[Shard]) -> None:
        self._check()
        await self.inner.ensure(shards)

    async def list(self) -> list[Lease]:
        self._check()
        return await self.inner.list()

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        self._check()
        return await self.inner.take(lease, owner)

    async def renew(self, lease: Lease) -> Lease | None:
        self._check()
        return await self.inner.renew(lease)

    async def checkpoint(self, lease: Lease, checkpoint: str) -> Lease | None:
        self._check()
        return await self.inner.checkpoint(lease, checkpoint)

    async def release(self, lease: Lease) -> None:
        self._check()
        await self.inner.release(lease)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SQLiteLog]:
    log = SQLiteLog(tmp_path / "log.sqlite", shard_count=2)
    yield log
    await log.close()


@pytest.fixture
async def leases(tmp_path: Path) -> AsyncIterator[SQLiteLeaseStore]:
    store = SQLiteLeaseStore(tmp_path / "leases.sqlite")
    yield store
    await store.close()


async def test_a_shard_stops_once_its_lease_went_unrenewed_for_the_timeout_and_resumes_after(
    log: SQLiteLog, leases: SQLiteLeaseStore
) -> None:
    flaky = FlakyLeases(leases)
    events: list[tuple[str, str]] = []
    delivered: list[str] = []

    async def handler(batch: Batch) -> None:
        delivered.extend(i.sequence for i in batch.items if isinstance(i, Delivered))

    consumer = Consumer(
        log, flaky, handler, worker_id="w1", lease_timeout_s=LEASE_TIMEOUT_S, idle_wait_s=0.05,
        on_lease_acquired=lambda shard: events.append(("acquired", shard)),
        on_lease_lost=lambda shard: events.append(("lost", shard)),
    )
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: len(consumer.loops) == 2, 10, "both shards held")
        shards = set(consumer.loops)
        assert sorted(events) == [("acquired", s) for s in sorted(shards)]
        flaky.down = True
        await eventually(lambda: {s for kind, s in events if kind == "lost"} == shards, 3 * LEASE_TIMEOUT_S,
                         "both shards stopped")
        # Records arriving now are not processed: the shard's lease may be another worker's.
        appended = await log.append(posts(0, 40, authors=8))
        await asyncio.sleep(2 * LEASE_TIMEOUT_S)
        assert delivered == []
        # The lease store is back: the shards are taken again and everything is delivered, once.
        flaky.down = False
        await eventually(checkpointed(leases, last_per_shard(appended)), 10, "all checkpointed")
        assert sorted(delivered, key=int) == sorted((a.sequence for a in appended), key=int)
        assert all(events.count(("acquired", shard)) >= 2 for shard in shards)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


async def test_a_stolen_lease_is_reported_lost(
    log: SQLiteLog, leases: SQLiteLeaseStore, tmp_path: Path
) -> None:
    lost: list[str] = []

    async def handler(batch: Batch) -> None:
        pass

    consumer = Consumer(log, leases, handler, worker_id="w1", lease_timeout_s=LEASE_TIMEOUT_S,
                        idle_wait_s=0.05, on_lease_lost=lost.append)
    task = asyncio.create_task(consumer.run())
    thief = SQLiteLeaseStore(tmp_path / "leases.sqlite")
    try:
        await eventually(lambda: len(consumer.loops) == 2, 10, "both shards held")
        victim = sorted(consumer.loops)[0]
        for _ in range(50):  # again if a renewal slipped in between the list and the take
            [held] = [lease for lease in await thief.list() if lease.shard_id == victim]
            if await thief.take(held, "thief") is not None:
                break
        else:
            raise AssertionError("the lease could not be stolen")
        await eventually(lambda: lost == [victim], 3 * LEASE_TIMEOUT_S, "the stolen shard reported lost")
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
        await thief.close()
