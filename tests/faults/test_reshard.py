"""Resharding on kinesalite while events flow: a shard split, then its two children merged, under the
real processors (Consumer, Runner, SQLite store). Per key, events are folded in the order they were
appended (parents before children); nothing is lost; every projection equals the reference model.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from pathlib import Path

from fanline.emulators import Emulator
from processors.runner import Runner
from projections.sqlite_store import SQLiteStore
from streams.consumer import Consumer
from streams.delivery import Batch, Delivered
from streams.events import decode, partition_key
from streams.kinesis_log import KinesisLog
from streams.log import Appended
from streams.sqlite_leases import SQLiteLeaseStore
from tests.faults.support import World, fold_settings, last_per_shard, wait_applied
from tests.faults.test_kill import feed


async def test_split_and_merge_while_events_flow_keep_per_key_order_and_lose_nothing(
    kinesalite: Emulator, tmp_path: Path
) -> None:
    stream = f"reshard-{uuid.uuid4().hex[:8]}"
    log = await KinesisLog.connect(stream, endpoint_url=kinesalite.endpoint_url)
    await log.ensure_stream(2)
    store = SQLiteStore(tmp_path / "store.db")
    leases = SQLiteLeaseStore(tmp_path / "leases.db")
    world = World(seed=12, namespaces=5, ops_each=40, prefix="rs")
    records = world.records()
    runner = Runner(store, fold_settings())
    folded: dict[str, list[str]] = defaultdict(list)  # partition key -> event ids, as folded

    async def handle(batch: Batch) -> None:
        await runner.handle(batch)
        for item in batch.items:
            if isinstance(item, Delivered):
                folded[partition_key(item.event)].append(item.event.id)

    consumer = Consumer(log, leases, handle, worker_id="rs", idle_wait_s=0.1, lease_timeout_s=3,
                        retry_initial_s=0.05, retry_max_s=0.5)
    running = asyncio.create_task(consumer.run())
    appended: list[Appended] = []
    try:
        feeding = asyncio.create_task(feed(log, records, appended, 5, 0.1))
        await asyncio.sleep(1.0)
        first = (await log.shards())[0]
        start, end = first.starting_hash_key, first.ending_hash_key
        await log.client.split_shard(StreamName=stream, ShardToSplit=first.shard_id,
                                     NewStartingHashKey=str((start + end) // 2))
        await log.ensure_stream(2)  # waits until ACTIVE again
        children = [s for s in await log.shards() if first.shard_id in s.parent_ids]
        assert len(children) == 2 and not feeding.done()
        await asyncio.sleep(1.0)
        low, high = sorted(children, key=lambda s: s.starting_hash_key)
        await log.client.merge_shards(StreamName=stream, ShardToMerge=low.shard_id,
                                      AdjacentShardToMerge=high.shard_id)
        await log.ensure_stream(2)
        assert not feeding.done(), "the reshards must happen while events flow"
        await feeding
        await wait_applied(store, last_per_shard(appended), timeout_s=60)
    finally:
        consumer.stop()
        await asyncio.wait_for(running, 20)
    try:
        shards = await log.shards()
        assert len(shards) == 5  # 2, the split's 2 children, their merge
        assert len({a.shard_id for a in appended}) >= 4  # records landed before and after each reshard
        expected: dict[str, list[str]] = defaultdict(list)
        for _, data in records:
            event = decode(data)
            expected[partition_key(event)].append(event.id)
        assert dict(folded) == dict(expected)  # per key, in order, each once
        await world.check(store)
    finally:
        await log.client.delete_stream(StreamName=stream)
        await leases.close()
        await store.close()
        await log.close()
