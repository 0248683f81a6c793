"""A shard whose lease is stolen and later returned: the Runner neither skips nor folds twice.

w1 (a Consumer and a Runner, wired as `fanline process` wires them) processes the shard; a thief
takes the lease, applies a batch through its own Runner and dies before checkpointing it. w1 takes
the expired lease back, is handed that batch again from the checkpoint, and must skip it: its
cached applied mark is from before the theft, the store's is past the batch.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from processors.fold import fold_event
from processors.runner import Fold, Runner
from processors.settings import FoldSettings
from processors.state import BatchState
from projections.memory_store import MemoryStore
from projections.records import Mutation
from streams.consumer import Consumer, position_after, to_batch
from streams.delivery import Delivered
from streams.events import Event, encode, partition_key
from streams.leases import Lease
from streams.sqlite_leases import SQLiteLeaseStore
from streams.sqlite_log import SQLiteLog
from tests.processors.builders import post, register
from tests.streams.test_consumer import eventually

LEASE_TIMEOUT_S = 1.0


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SQLiteLog]:
    log = SQLiteLog(tmp_path / "log.sqlite", shard_count=1)
    yield log
    await log.close()


def counting(folded: Counter[str]) -> Fold:
    def fold(state: BatchState, event: Event, settings: FoldSettings) -> list[Mutation]:
        folded[event.id] += 1
        return fold_event(state, event, settings)

    return fold


async def append(log: SQLiteLog, events: list[Event]) -> str:
    appended = await log.append([(partition_key(e), encode(e)) for e in events])
    return appended[-1].sequence


def at(leases: SQLiteLeaseStore, checkpoint: str, owner: str | None = None) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(lease.checkpoint == checkpoint and (owner is None or lease.owner == owner)
                   for lease in await leases.list())  # none until the consumer made it

    return check


async def steal(leases: SQLiteLeaseStore) -> Lease:
    """Take the only lease as "thief" (again if a renewal of its owner slipped in between)."""
    for _ in range(50):
        [lease] = await leases.list()
        taken = await leases.take(lease, "thief")
        if taken is not None:
            return taken
    raise AssertionError("the lease could not be taken")


async def test_a_lease_stolen_and_returned_neither_skips_nor_folds_twice(
    log: SQLiteLog, tmp_path: Path
) -> None:
    store = MemoryStore()
    folded: Counter[str] = Counter()
    settings = FoldSettings("push")
    w1 = Runner(store, settings, fold=counting(folded))
    leases = SQLiteLeaseStore(tmp_path / "leases.sqlite")
    thief_leases = SQLiteLeaseStore(tmp_path / "leases.sqlite")
    lost: list[str] = []

    def on_lost(shard_id: str) -> None:
        lost.append(shard_id)
        w1.forget(shard_id)

    consumer = Consumer(log, leases, w1.handle, worker_id="w1", lease_timeout_s=LEASE_TIMEOUT_S,
                        idle_wait_s=0.05, on_lease_acquired=w1.forget, on_lease_lost=on_lost)
    events: list[Event] = [register("a"), *(post("a", f"p{n}") for n in range(10))]
    task = asyncio.create_task(consumer.run())
    try:
        first = await append(log, events)
        await eventually(at(leases, first), 10, "w1 checkpointed the first events")
        # The thief takes the lease; w1 learns at its next renewal and stops the shard.
        stolen = await steal(thief_leases)
        await eventually(lambda: stolen.shard_id in lost, 3 * LEASE_TIMEOUT_S, "w1 lost the shard")
        # The thief folds and applies the next events, then dies before its checkpoint.
        more: list[Event] = [post("a", f"q{n}") for n in range(10)]
        events += more
        await append(log, more)
        reader = log.reader(stolen.shard_id, position_after(stolen.checkpoint))
        batch = to_batch(stolen.shard_id, await reader.read(100))
        assert [i.event for i in batch.items if isinstance(i, Delivered)] == more
        await Runner(store, settings, fold=counting(folded)).handle(batch)
        # w1 takes the expired lease back and is handed those events again: it must skip them.
        last: list[Event] = [post("a", f"r{n}") for n in range(5)]
        events += last
        end = await append(log, last)
        await eventually(at(leases, end, "w1"), 5 * LEASE_TIMEOUT_S, "w1 took the shard back and went on")
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
        await leases.close()
        await thief_leases.close()
    assert folded == Counter(e.id for e in events)  # each event folded exactly once
    page = await store.posts_page("a", 100, None)
    assert {p.post_id for p in page} == {f"{x}{n}" for x in "pq" for n in range(10)} | {
        f"r{n}" for n in range(5)
    }
