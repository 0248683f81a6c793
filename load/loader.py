"""Loading a world: a bulk producer into the Log port, then its projections, by one of two paths.

`append_all` writes events in large batches (one `Log.append` per BULK_BATCH events) with a
progress bar and answers the last sequence it wrote per shard. Then the active projection
version gets the world, with its fold settings:

- the bulk path (`fold_bulk`), on the embedded backend when the version's store has nothing
  applied and no processor holds a lease of it: `fanline.bulk_workers.parallel_bulk_rebuild`
  folds the log with the same Runner and batches into memory, one worker process per core (each
  a group of shards), and writes the store file at once in key order, then
  `fanline.replay.seed_leases` checkpoints the version's leases where the fold stopped;
- the live path (`process_until`), otherwise (the aws backend, a store already holding events,
  a lease in use, more events than BULK_MAX_EVENTS to hold in memory) or when asked: the
  processors exactly as `fanline process` runs them (a Consumer with leases, the Runner, the
  store of the settings), in this process, until every shard's checkpoint has reached the
  sequences appended.

Either way the checkpoints stay in the version's lease store, so a `fanline up` or `fanline
process` on the same data directory goes on from there instead of reading the world again.
The figures each path reports come from different places (see `Loaded`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from itertools import islice
from typing import Literal

from prometheus_client import CollectorRegistry
from tqdm import tqdm

from fanline import versions
from fanline.bulk_workers import parallel_bulk_rebuild
from fanline.commands.replay import BULK_MAX_EVENTS
from fanline.replay import seed_leases
from fanline.settings import Settings
from fanline.wiring import active_fold_settings, open_log
from processors.metrics import Metrics
from processors.runner import Runner
from projections.sqlite_bulk import has_applied
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

LoadPath = Literal["bulk", "live"]


@dataclass(frozen=True, slots=True)
class Loaded:
    events: int
    append_s: float
    process_s: float  # from the end of the append to the projections caught up, either path
    path: LoadPath
    why: str  # why this path was taken
    # Named by what they count, as each path has its own sources:
    # live: `posts`, `timeline_entries`, `items_written`, the processors' Prometheus counters
    #   (PostCreated events folded, timeline entries fanned out, items put or deleted);
    # bulk: `process_cpu_s`, `bulk_workers` and `bulk_write_s` from `fanline.replay.Rebuilt` (CPU
    #   of this process and its workers, how many worker processes folded, seconds writing the
    #   store file: the workers' parts and their merge) and `store_rows`, the rows it wrote (every
    #   table, the applied marks too): the fold counts no writes, and a timeline row trimmed
    #   before the write was never written.
    figures: dict[str, int | float]


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


async def bulk_refusal(settings: Settings) -> str | None:
    """Why the active version cannot be loaded on the bulk path (which replaces its store file),
    or None when it can. A processor started after this check and before the bulk path seeds
    the leases makes `seed_leases` fail (its lease is in use): the world is then not marked loaded."""
    if settings.backend != "sqlite":
        return f"the {settings.backend} backend has no bulk path"
    active = await versions.active_version(settings)
    if await asyncio.to_thread(has_applied, versions.store_path(settings, active)):
        return f"the store of version {active!r} already holds events"
    leases = await versions.open_leases_version(settings, active)
    try:
        held = [lease for lease in await leases.list() if lease.owner is not None]
    finally:
        await leases.close()
    if held:
        return f"{held[0].owner} holds the lease on {held[0].shard_id} of version {active!r}"
    return None


async def fold_bulk(settings: Settings, total: int | None = None,
                    progress: bool = True) -> dict[str, int | float]:
    """Fold the whole log into the active version's store file at once (it must hold nothing
    applied: `bulk_refusal`), then seed the version's leases where the fold stopped."""
    async with AsyncExitStack() as stack:
        log = await open_log(settings)
        stack.push_async_callback(log.close)
        active = await versions.active_version(settings)
        fold = await active_fold_settings(settings)
        with tqdm(total=total, unit="ev", desc="fold", disable=not progress, mininterval=1) as bar:
            # No archive: like the processors on a fresh version, the fold reads the log from its start.
            rebuilt = await parallel_bulk_rebuild(log, None, versions.store_path(settings, active), fold,
                                                  progress=bar.update)
        store = await versions.open_store_version(settings, active)
        stack.push_async_callback(store.close)
        leases = await versions.open_leases_version(settings, active)
        stack.push_async_callback(leases.close)
        await seed_leases(leases, log, store, rebuilt, what=f"version {active!r}")
    return {"process_cpu_s": round(rebuilt.cpu_seconds, 1), "bulk_workers": rebuilt.workers,
            "bulk_write_s": round(rebuilt.bulk_write_seconds, 1), "store_rows": rebuilt.bulk_rows}


async def process_live(settings: Settings, last: dict[str, str], total: int | None = None,
                       progress: bool = True) -> dict[str, int | float]:
    """`process_until`, with the figures of the processors' own counters."""
    metrics = Metrics(CollectorRegistry())
    await process_until(settings, last, total, progress, metrics)

    def counted(name: str, **labels: str) -> int:
        return int(sum(m.value for family in metrics.registry.collect() for m in family.samples
                       if m.name == name and labels.items() <= m.labels.items()))

    return {"posts": counted("fanline_events_processed_total", event_type="PostCreated"),
            "timeline_entries": counted("fanline_timeline_deliveries_total"),
            "items_written": counted("fanline_items_written_total")}


async def load_events(settings: Settings, events: Iterable[Event], total: int | None = None,
                      progress: bool = True, live: bool = False) -> Loaded:
    """Append the events, then fold them into the active version: on the bulk path unless
    `live` or `bulk_refusal` says otherwise; how long each half took."""
    began = time.monotonic()
    log = await open_log(settings)
    try:
        last = await append_all(log, events, total, progress)
    finally:
        await log.close()
    appended = time.monotonic()
    if live:
        refusal: str | None = "asked for (--live)"
    elif total is not None and total > BULK_MAX_EVENTS:
        refusal = f"{total:,} events are more than the bulk path holds in memory ({BULK_MAX_EVENTS:,})"
    else:
        refusal = await bulk_refusal(settings)
    if refusal is None:
        figures = await fold_bulk(settings, total, progress)
        path: LoadPath = "bulk"
        why = "the active version's store holds nothing and no processor holds its leases"
    else:
        figures = await process_live(settings, last, total, progress)
        path, why = "live", refusal
    return Loaded(total or 0, round(appended - began, 1), round(time.monotonic() - appended, 1), path, why,
                  figures)
