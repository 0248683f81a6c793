"""Rebuilding projections from the archive and the stream's tail (what `fanline replay` runs).

`rebuild` reads each shard (those of the stream, and those only the archive still knows): the
archive's records, then the stream after the last one the archive held (from the trim horizon
when it holds none), until the stream has nothing more. Records go through the projection
runner (`processors.runner.Runner`), the same fold as live processing, in batches of
thousands, so each store transaction carries thousands of events. The runner skips what the
target store has already applied, so a replay killed part-way and started again continues
where its last durable batch ended, with the same result.

Shards run concurrently, children after their parents. `until` (per shard, a sequence number)
stops each shard exactly there, and skips shards not named: `--verify` rebuilds to the
positions the live projections have reached.

`bulk_rebuild` (the embedded backend's fast path for a version with nothing applied yet) folds
the same batches through the same runner into a MemoryStore, then writes the whole state into
the version's SQLite file in key order at once (projections.sqlite_bulk): a rebuild is a bulk
load, and inserting millions of timeline rows all over a B-tree, batch by batch, was most of
its time. A kill during it loses the bulk phase (the file appears complete or not at all) and
the next run starts it again. `rebuild(..., after=bulk)` then folds what the stream got since,
from where the bulk phase stopped, into the SQLite store as above.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from processors.metrics import Metrics
from processors.runner import Runner
from processors.settings import FoldSettings
from projections.memory_store import MemoryStore
from projections.records import Mutation
from projections.sqlite_bulk import write_store
from projections.store import Store
from streams.archive import Archive
from streams.consumer import parents_first, to_batch
from streams.leases import SHARD_END, TRIM_HORIZON, LeaseStore
from streams.log import Log, Position, ReadResult, Record, Shard, sequence_key

# Events per store transaction: fewer commits and timeline trims than live batches of 1000.
BATCH = 10_000
READ_LIMIT = 10_000  # the most a Kinesis GetRecords (and the Log port) answers at once
REPLAY_OWNER = "fanline-replay"


@dataclass(slots=True)
class Rebuilt:
    events: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of this process, all threads (the machine may be shared)
    last: dict[str, str] = field(default_factory=dict)  # per shard, the last sequence read
    ended: set[str] = field(default_factory=set)  # closed shards read to their end
    bulk_events: int = 0  # of `events`, those folded in memory and bulk-written
    bulk_rows: int = 0
    bulk_write_seconds: float = 0.0  # of `seconds`, writing the bulk phase's rows
    workers: int = 1  # processes that folded the bulk phase (fanline.bulk_workers)
    merge_seconds: float = 0.0  # of `bulk_write_seconds`, merging the workers' parts
    exchange_seconds: float = 0.0  # of `seconds`, the workers handing timelines to each other
    shard_events: dict[str, int] = field(default_factory=dict)  # per shard (count_events)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def shard_order(log: Log, archive: Archive | None) -> tuple[list[str], dict[str, Shard]]:
    """Every shard to read, parents first; shards only the archive knows (trimmed) come first."""
    shards = parents_first(await log.shards())
    in_log = {s.shard_id: s for s in shards}
    archived = sorted(await archive.marks()) if archive is not None else []
    return [s for s in archived if s not in in_log] + list(in_log), in_log


async def _records(
    log: Log, archive: Archive | None, shard_id: str, in_log: bool, until: str | None, rebuilt: Rebuilt,
    after: str | None = None,
) -> AsyncIterator[list[Record]]:
    """The shard's records in order, archive then stream, in chunks; stops at `until`. With
    `after`, only the stream's records after that one (what a bulk phase has not read)."""
    limit = None if until is None else sequence_key(until)
    last: str | None = after
    if after is not None:
        archive = None

    def cut(records: list[Record]) -> tuple[list[Record], bool]:
        """The records up to `until`, and whether `until` is reached."""
        if limit is None:
            return records, False
        kept = [r for r in records if sequence_key(r.sequence) <= limit]
        return kept, len(kept) < len(records) or (bool(kept) and sequence_key(kept[-1].sequence) >= limit)

    if archive is not None:
        async for chunk in archive.read(shard_id):
            kept, done = cut(chunk)
            if kept:
                last = kept[-1].sequence
                yield kept
            if done:
                return
    if not in_log:
        return
    reader = log.reader(shard_id, Position.after(last) if last is not None else Position.trim_horizon())
    while True:
        result = await reader.read(READ_LIMIT)
        kept, done = cut(result.records)
        if kept:
            last = kept[-1].sequence
            yield kept
        if done:
            return
        if result.end_of_shard:
            rebuilt.ended.add(shard_id)
            return
        if not result.records and result.millis_behind == 0:
            return  # caught up with the stream's tip


class QuietMetrics(Metrics):
    """A replay exposes no metrics: counting every event's writes would cost it a tenth of its time."""

    def count_writes(self, event_type: str, strategy: str, mutations: Sequence[Mutation]) -> None:
        return None


async def rebuild(
    log: Log, archive: Archive | None, store: Store, settings: FoldSettings, *,
    until: dict[str, str] | None = None, progress: Callable[[int], None] = lambda n: None,
    batch: int = BATCH, after: Rebuilt | None = None, shards: Collection[str] | None = None,
) -> Rebuilt:
    """Shards are rebuilt concurrently (a child once its parents are done): while one shard's
    batch is written on the store's thread, another's is folded on this one.

    `after`: what a bulk phase folded into `store` already; each shard goes on in the stream
    after the last record it read (a shard it read to its end is done), and the result counts
    both phases. `shards`: only these (a worker's group, fanline.bulk_workers)."""
    runner = Runner(store, settings, QuietMetrics())
    rebuilt = Rebuilt()
    if after is not None:
        rebuilt = dataclasses.replace(after, last=dict(after.last), ended=set(after.ended))
    started, cpu = time.perf_counter(), time.process_time()
    order, in_log = await shard_order(log, archive)
    finished = {shard_id: asyncio.Event() for shard_id in order}

    async def one(shard_id: str) -> None:
        try:
            for parent in in_log[shard_id].parent_ids if shard_id in in_log else ():
                if parent in finished:
                    await finished[parent].wait()
            if (until is not None and shard_id not in until) or shard_id in rebuilt.ended:
                return
            if shards is not None and shard_id not in shards:
                return
            pending: list[Record] = []
            start = rebuilt.last.get(shard_id) if after is not None else None
            async for records in _records(log, archive, shard_id, shard_id in in_log,
                                          None if until is None else until[shard_id], rebuilt, start):
                pending += records
                while len(pending) >= batch:
                    await _fold(runner, shard_id, pending[:batch])
                    pending = pending[batch:]
                    rebuilt.events += batch
                    progress(batch)
                rebuilt.last[shard_id] = records[-1].sequence
            if pending:
                await _fold(runner, shard_id, pending)
                rebuilt.events += len(pending)
                progress(len(pending))
        finally:
            finished[shard_id].set()

    async with asyncio.TaskGroup() as group:
        for shard_id in order:
            group.create_task(one(shard_id))
    rebuilt.seconds += time.perf_counter() - started
    rebuilt.cpu_seconds += time.process_time() - cpu
    return rebuilt


async def bulk_rebuild(
    log: Log, archive: Archive | None, path: Path, settings: FoldSettings, *,
    until: dict[str, str] | None = None, progress: Callable[[int], None] = lambda n: None,
    batch: int = BATCH,
) -> Rebuilt:
    """Fold everything there is (to `until`) as `rebuild` does, into memory, then write the
    SQLite store at `path` at once (replacing it: it must hold nothing applied, nobody may
    have it open). The same runner, batches and store semantics (MemoryStore passes the store
    contract) give the same projections as a rebuild into SQLite."""
    started, cpu = time.perf_counter(), time.process_time()
    store = MemoryStore()
    rebuilt = await fold_and_write(log, archive, store, path, settings, until=until, progress=progress,
                                   batch=batch)
    del store  # freed now, and timed: the tail streamed next needs the memory
    rebuilt.seconds = time.perf_counter() - started
    rebuilt.cpu_seconds = time.process_time() - cpu
    return rebuilt


async def fold_and_write(
    log: Log, archive: Archive | None, store: MemoryStore, path: Path, settings: FoldSettings, *,
    until: dict[str, str] | None = None, progress: Callable[[int], None] = lambda n: None,
    batch: int = BATCH, shards: Collection[str] | None = None, part: bool = False,
    before_write: Callable[[], None] | None = None,
) -> Rebuilt:
    """The bulk path's two steps: fold (as `rebuild`, only `shards` if given) into `store`, then
    write it at `path` (`write_store`; `part`: a worker's part, fanline.bulk_workers, which hands
    timelines to the other workers `before_write`). The caller owns `store`: freeing its millions
    of objects costs seconds, which a worker about to exit skips. Times the write
    (`bulk_write_seconds`) and what comes before it (`exchange_seconds`)."""
    with _no_gc():
        rebuilt = await rebuild(log, archive, store, settings, until=until, progress=progress, batch=batch,
                                shards=shards)
        if before_write is not None:
            exchanging = time.perf_counter()
            before_write()
            rebuilt.exchange_seconds = time.perf_counter() - exchanging
        writing = time.perf_counter()
        rebuilt.bulk_rows = await asyncio.to_thread(write_store, path, store.rows, part=part)
        rebuilt.bulk_write_seconds = time.perf_counter() - writing
    rebuilt.bulk_events = rebuilt.events
    return rebuilt


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cycle collector off while millions of long-lived objects pile up: its full passes
    over them were 40 % of a bulk fold's CPU (5K world), and the fold makes no cycles to collect.
    The survivors are frozen (never scanned again) when it comes back on."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


async def _fold(runner: Runner, shard_id: str, records: list[Record]) -> None:
    await runner.handle(to_batch(shard_id, ReadResult(records, end_of_shard=False, millis_behind=0)))


async def count_events(log: Log, archive: Archive | None, until: dict[str, str] | None = None) -> Rebuilt:
    """Read what a rebuild would, decoding and folding nothing: the total for the ETA, the events
    per shard (how `fanline.bulk_workers` balances its workers), and the baseline the rebuild's
    speed is compared with. (Decoding too made this pass ~60 % longer: two minutes at 100K.)"""
    counted = Rebuilt()
    started, cpu = time.perf_counter(), time.process_time()
    order, in_log = await shard_order(log, archive)
    for shard_id in order:
        if until is not None and shard_id not in until:
            continue
        async for records in _records(log, archive, shard_id, shard_id in in_log,
                                      None if until is None else until[shard_id], counted):
            counted.events += len(records)
            counted.shard_events[shard_id] = counted.shard_events.get(shard_id, 0) + len(records)
    counted.seconds = time.perf_counter() - started
    counted.cpu_seconds = time.process_time() - cpu
    return counted


class Applies(Protocol):
    """What a rebuild folds into: a projection store or a graph (each keeps its applied marks)."""

    async def applied(self) -> dict[str, str]: ...


async def seed_leases(leases: LeaseStore, log: Log, target: Applies, rebuilt: Rebuilt,
                      what: str = "version") -> None:
    """Give the new version's lease table (of its store, or of its graph: `what`) the positions
    the rebuild reached, so the processors that take over after the switch read on from there
    (and not from the trim horizon)."""
    shards = parents_first(await log.shards())
    await leases.ensure(shards)
    applied = await target.applied()
    for lease in await leases.list():
        if lease.shard_id in rebuilt.ended:
            checkpoint = SHARD_END
        else:
            checkpoint = rebuilt.last.get(lease.shard_id) or applied.get(lease.shard_id) or TRIM_HORIZON
        if lease.checkpoint == checkpoint:
            continue
        taken = await leases.take(lease, REPLAY_OWNER)
        if taken is None:
            raise RuntimeError(f"the new {what}'s lease on {lease.shard_id} is in use: is a replay running?")
        marked = await leases.checkpoint(taken, checkpoint)
        if marked is None:
            raise RuntimeError(f"the new {what}'s lease on {lease.shard_id} was taken during the replay")
        await leases.release(marked)
