"""Loading a world: a bulk producer into the Log port, then the real processors until caught up.

`append_all` writes events in large batches (one `Log.append` per BULK_BATCH events) with a
progress bar and answers the last sequence it wrote per shard. `process_until` runs the
processors exactly as `fanline process` does (a Consumer with leases, the Runner, the store of
the settings) in this process until every shard's checkpoint has reached those sequences; the
checkpoints stay in the lease store, so a `fanline up` on the same data directory goes on from
there instead of reading the world again.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from itertools import islice

from prometheus_client import CollectorRegistry
from tqdm import tqdm

from fanline import versions
from fanline.settings import Settings
from fanline.wiring import active_fold_settings, open_log
from processors.metrics import Metrics
from processors.runner import Runner
from streams.consumer import Consumer
from streams.delivery import Batch
from streams.events import Event, encode, partition_key
from streams.leases import SHARD_END, TRIM_HORIZON
from streams.log import Log, sequence_key

# Events per append: big enough that the per-call cost (one transaction on SQLite) vanishes,
# small enough that the encoded batch stays a few MB.
BULK_BATCH = 5000
POLL_S = 0.5
# Records per processor batch: each batch is one store transaction and a checkpoint, and each
# transaction writes every page it touched again (WAL, then checkpoint) and trims every timeline
# it pushed to. A world's posts reach most timelines in every batch, and its follows (grouped by
# followee) most pages of `following`, so the fewest batches write the least: the most a log
# read may return (Kinesis' GetRecords limit, which the SQLite log keeps too).
READ_BATCH = 10_000
# The processing store's page cache (SQLite's default is 2 MiB): the pages a batch writes stay
# cached for the next one, and are not spilled to the WAL before the commit.
CACHE_MIB = 1024


@dataclass(frozen=True, slots=True)
class Loaded:
    events: int
    append_s: float
    process_s: float
    # From the processors' own counters: what the fan-out actually wrote.
    posts: int
    timeline_entries: int
    items_written: int


async def append_all(log: Log, events: Iterable[Event], total: int | None = None,
                     progress: bool = True) -> dict[str, str]:
    """Append every event in order; the last sequence written per shard."""
    last: dict[str, str] = {}
    with tqdm(total=total, unit="ev", desc="append", disable=not progress, mininterval=1) as bar:
        for chunk in _chunks(events, BULK_BATCH):
            for appended in await log.append([(partition_key(e), encode(e)) for e in chunk]):
                last[appended.shard_id] = appended.sequence  # in order: the last one is the highest
            bar.update(len(chunk))
    return last


def _chunks(events: Iterable[Event], size: int) -> Iterator[list[Event]]:
    """itertools.batched arrives in Python 3.12; this is it for 3.11."""
    it = iter(events)
    while chunk := list(islice(it, size)):
        yield chunk


def _reached(checkpoint: str, target: str) -> bool:
    if checkpoint == SHARD_END:
        return True
    return checkpoint != TRIM_HORIZON and sequence_key(checkpoint) >= sequence_key(target)


async def process_until(settings: Settings, last: dict[str, str], total: int | None = None,
                        progress: bool = True, metrics: Metrics | None = None) -> None:
    """Run the processors of `settings` until each shard in `last` is checkpointed at its sequence."""
    async with AsyncExitStack() as stack:
        log = await open_log(settings)
        stack.push_async_callback(log.close)
        # The active projection version, with its own leases and recorded fold settings (after a
        # `fanline replay` it is not the first one).
        active = await versions.active_version(settings)
        store = await versions.open_store_version(settings, active, cache_mib=CACHE_MIB)
        stack.push_async_callback(store.close)
        leases = await versions.open_leases_version(settings, active)
        stack.push_async_callback(leases.close)
        runner = Runner(store, await active_fold_settings(settings), metrics or Metrics(CollectorRegistry()))
        bar = stack.enter_context(tqdm(total=total, unit="ev", desc="process", disable=not progress,
                                       mininterval=1))

        async def handle(batch: Batch) -> None:
            await runner.handle(batch)
            bar.update(len(batch.items))

        consumer = Consumer(log, leases, handle, worker_id=f"world-loader-{os.getpid()}",
                            batch_size=READ_BATCH)
        running = asyncio.create_task(consumer.run())
        try:
            while not running.done():
                checkpoints = {lease.shard_id: lease.checkpoint for lease in await leases.list()}
                if all(s in checkpoints and _reached(checkpoints[s], seq) for s, seq in last.items()):
                    break
                await asyncio.sleep(POLL_S)
        finally:
            consumer.stop()
            await running


async def load_events(settings: Settings, events: Iterable[Event], total: int | None = None,
                      progress: bool = True) -> Loaded:
    """Append the events, then process them; how long each half took."""
    began = time.monotonic()
    log = await open_log(settings)
    try:
        last = await append_all(log, events, total, progress)
    finally:
        await log.close()
    appended = time.monotonic()
    metrics = Metrics(CollectorRegistry())
    await process_until(settings, last, total, progress, metrics)
    took = time.monotonic() - appended

    def counted(name: str, **labels: str) -> int:
        return int(sum(m.value for family in metrics.registry.collect() for m in family.samples
                       if m.name == name and labels.items() <= m.labels.items()))

    return Loaded(total or 0, round(appended - began, 1), round(took, 1),
                  posts=counted("fanline_events_processed_total", event_type="PostCreated"),
                  timeline_entries=counted("fanline_timeline_deliveries_total"),
                  items_written=counted("fanline_items_written_total"))
