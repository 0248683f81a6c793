"""A bulk rebuild on every core: groups of shards folded in worker processes, their stores merged.

Everything a fold reads belongs to the partition-key users of a shard (processors.state), so
shards fold independently: each worker process folds its group of shards exactly as
`fanline.replay.bulk_rebuild` does (the same Runner, batches and MemoryStore). A timeline,
though, gets entries from every shard (a post's from its author's), so before they write, the
workers hand each other timelines: the parent splits the owners into one range per worker
(`owner_bounds`, balanced by the entries to write), each worker hands every timeline outside its
range to the worker whose range it is in, and keeps the newest `timeline_cap` of what it holds
and what it gets (the newest of every entry put, as trimming after each batch keeps). Each
worker then writes a part file (`<path>.part<pid>-<i>`, every table in key order) and the parent
merges the parts into the store at `path` (`projections.sqlite_bulk.merge_stores`: the
timelines copied part after part, the other tables merged in key order) and renames it into
place. A shard's children are folded after it in the same worker (a lineage is one group);
groups are balanced by the events the counting pass found in each shard. A worker opens the
SQLite log and the local archive by their paths and imports only what folding needs (no AWS
clients: it starts in ~0.2 s).

A worker talks to the parent through a pipe (`_run_workers`) and ends with `os._exit`: freeing
a MemoryStore of millions of objects one by one would cost seconds (minutes for the 100K world)
for nothing. A worker that fails (or is killed) fails the rebuild; parts and the timelines
handed through files beside them are scratch files, removed after the merge and before the
next attempt.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
import sys
import time
import traceback
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import msgspec

from fanline.replay import BATCH, Rebuilt, bulk_rebuild, fold_and_write, shard_order
from processors.settings import FoldSettings
from projections.memory_store import HandedTimelines, MemoryStore
from projections.sqlite_bulk import merge_stores
from streams.archive import Archive, LocalArchive
from streams.log import Log, Shard
from streams.sqlite_log import SQLiteLog

POLL_S = 0.25
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def default_workers() -> int:
    return os.cpu_count() or 1


def shard_groups(order: Sequence[str], in_log: dict[str, Shard], counts: dict[str, int],
                 workers: int) -> list[list[str]]:
    """At most `workers` groups of shards, each a union of whole lineages (a shard with its
    parents), balanced by events (the largest lineage first to the lightest group), each in
    `order` (parents first). Shards with no events are left out."""
    lineage = {shard_id: shard_id for shard_id in order}

    def root(shard_id: str) -> str:
        while lineage[shard_id] != shard_id:
            shard_id = lineage[shard_id]
        return shard_id

    for shard_id in order:
        for parent in in_log[shard_id].parent_ids if shard_id in in_log else ():
            if parent in lineage:
                lineage[root(shard_id)] = root(parent)
    members: dict[str, list[str]] = {}
    for shard_id in order:
        if counts.get(shard_id, 0):
            members.setdefault(root(shard_id), []).append(shard_id)
    groups: list[tuple[int, list[str]]] = [(0, []) for _ in range(max(1, min(workers, len(members))))]
    for shards in sorted(members.values(), key=lambda s: -sum(counts[i] for i in s)):
        lightest = min(range(len(groups)), key=lambda g: groups[g][0])
        events, group = groups[lightest]
        groups[lightest] = (events + sum(counts[i] for i in shards), group + shards)
    position = {shard_id: i for i, shard_id in enumerate(order)}
    return [sorted(group, key=position.__getitem__) for _, group in groups if group]


def part_paths(path: Path, count: int) -> list[Path]:
    """Named after this process too: a worker orphaned by a killed replay (were it to outlive its
    parent) could never overwrite the part of the next one."""
    return [path.with_name(f"{path.name}.part{os.getpid()}-{i}") for i in range(count)]


def remove_parts(path: Path) -> None:
    """The part files a killed rebuild left beside `path` (with their journals)."""
    for part in path.parent.glob(f"{path.name}.part*"):
        part.unlink(missing_ok=True)


async def parallel_bulk_rebuild(
    log: Log, archive: Archive | None, path: Path, fold: FoldSettings, *,
    counts: dict[str, int] | None = None, until: dict[str, str] | None = None,
    progress: Callable[[int], None] = lambda n: None, workers: int | None = None, batch: int = BATCH,
) -> Rebuilt:
    """`fanline.replay.bulk_rebuild` with the shards folded by up to `workers` processes
    (default: one per core); `counts` are the events per shard (the counting pass's; without
    them every shard weighs the same, as hashed keys make them). With one group it is
    bulk_rebuild itself, in this process (and so on a log or archive other than SQLite's and
    the local one: workers open those by their paths)."""
    order, in_log = await shard_order(log, archive)
    if until is not None:
        order = [shard_id for shard_id in order if shard_id in until]
    if counts is None:
        counts = dict.fromkeys(order, 1)
    groups = shard_groups(order, in_log, counts, workers or default_workers())
    local = isinstance(log, SQLiteLog) and (archive is None or isinstance(archive, LocalArchive))
    if len(groups) < 2 or not local:
        return await bulk_rebuild(log, archive, path, fold, until=until, progress=progress, batch=batch)
    started, cpu = time.perf_counter(), time.process_time()
    remove_parts(path)
    parts = part_paths(path, len(groups))
    try:
        assert isinstance(log, SQLiteLog)
        archive_root = archive.root if isinstance(archive, LocalArchive) else None
        sources = _Sources(log.path, log.shard_count, archive_root)
        folded = await _run_workers(sources, fold, groups, parts, until, batch, progress)
        merging = time.perf_counter()
        rows = await asyncio.to_thread(merge_stores, path, parts)
        merge_s = time.perf_counter() - merging
    finally:
        remove_parts(path)
    rebuilt = Rebuilt(bulk_rows=rows, workers=len(groups), merge_seconds=merge_s)
    for part in folded:
        rebuilt.events += part.events
        rebuilt.last.update(part.last)
        rebuilt.ended |= part.ended
        rebuilt.cpu_seconds += part.cpu_seconds
    rebuilt.bulk_events = rebuilt.events
    rebuilt.bulk_write_seconds = max(p.bulk_write_seconds for p in folded) + merge_s
    rebuilt.exchange_seconds = max(p.exchange_seconds for p in folded)
    rebuilt.seconds = time.perf_counter() - started
    rebuilt.cpu_seconds += time.process_time() - cpu
    return rebuilt


@dataclass(frozen=True, slots=True)
class _Sources:
    """Where a worker opens the log and the archive (it gets paths, not the parent's objects)."""

    log: Path
    shards: int
    archive: Path | None


async def _run_workers(sources: _Sources, fold: FoldSettings, groups: list[list[str]], parts: list[Path],
                       until: dict[str, str] | None, batch: int,
                       progress: Callable[[int], None]) -> list[Rebuilt]:
    """Start a worker per group and see each through its three messages (`_worker`): the sizes
    of its timelines after the fold (answered with the ranges of owners), the files of the
    timelines it handed on (answered with those handed to it), its result."""
    # spawn, not fork: this process has threads (SQLite's, asyncio's), which fork does not copy.
    context = multiprocessing.get_context("spawn")
    folded_events = context.Value("q", 0)
    processes, pipes = [], []
    for index, (group, part) in enumerate(zip(groups, parts, strict=True)):
        here, there = context.Pipe()
        process = context.Process(target=_worker, name=f"fanline-replay-{part.name}",
                                  args=(os.getpid(), there, folded_events, sources, fold, group, part,
                                        index, until, batch))
        process.start()
        there.close()  # the worker's end: this one sees EOF when it dies
        processes.append(process)
        pipes.append(here)
    reported = 0

    def report() -> None:
        nonlocal reported
        now = int(folded_events.value)
        progress(now - reported)
        reported = now

    try:
        sizes = await _messages(processes, pipes, report)
        bounds = owner_bounds(sizes, len(pipes), fold.timeline_cap)
        for process, pipe in zip(processes, pipes, strict=True):
            _answer(process, pipe, bounds)
        handed: list[dict[int, Path]] = await _messages(processes, pipes, report)
        for index, (process, pipe) in enumerate(zip(processes, pipes, strict=True)):
            _answer(process, pipe, [files[index] for files in handed if index in files])
        results: list[Rebuilt] = await _messages(processes, pipes, report)
        return results
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()


async def _messages(processes: Sequence[multiprocessing.process.BaseProcess], pipes: list[Connection],
                    report: Callable[[], None]) -> list[Any]:
    """The next message of every worker, once each has sent it. A worker that failed (its message
    is its traceback) or died fails the rebuild, without waiting for the others."""
    while pending := [(process, pipe) for process, pipe in zip(processes, pipes, strict=True)
                      if not pipe.poll()]:
        for process, pipe in pending:
            if not process.is_alive() and not pipe.poll():
                raise _died(process)
        waited = [pipe for _, pipe in pending] + [process.sentinel for process, _ in pending]
        await asyncio.to_thread(wait, waited, POLL_S)
        report()
    report()
    messages = []
    for process, pipe in zip(processes, pipes, strict=True):
        try:
            message = pipe.recv()
        except EOFError:  # it closed the pipe (it died) without sending
            raise _died(process) from None
        if isinstance(message, str):
            raise RuntimeError(f"replay worker {process.name} failed:\n{message}")
        messages.append(message)
    return messages


def _answer(process: multiprocessing.process.BaseProcess, pipe: Connection, answer: object) -> None:
    try:
        pipe.send(answer)
    except BrokenPipeError:  # it died after its message
        raise _died(process) from None


def _died(process: multiprocessing.process.BaseProcess) -> RuntimeError:
    process.join(5)
    return RuntimeError(f"replay worker {process.name} ended without a result (exit code "
                        f"{process.exitcode}: killed, or out of memory?)")


def owner_bounds(sizes: Sequence[dict[str, int]], workers: int, cap: int) -> list[str]:
    """Where the ranges of timeline owners that `workers` write begin (owner `o` is worker
    `bisect_right(bounds, o)`'s): at most `workers - 1` owners, ascending, so that each range
    holds about as many of the entries written (a timeline's, up to `cap`). `sizes`: each
    worker's entries per owner."""
    totals: dict[str, int] = {}
    for worker in sizes:
        for owner, entries in worker.items():
            totals[owner] = totals.get(owner, 0) + entries
    kept = {owner: min(entries, cap) for owner, entries in totals.items()}
    whole, before, bounds = sum(kept.values()), 0, list[str]()
    for owner in sorted(kept):
        if len(bounds) == workers - 1:
            break
        if before >= whole * (len(bounds) + 1) / workers:
            bounds.append(owner)
        before += kept[owner]
    return bounds


def _worker(parent: int, pipe: Connection, folded_events: Synchronized[int], sources: _Sources,
            fold: FoldSettings, shards: list[str], part: Path, index: int, until: dict[str, str] | None,
            batch: int) -> None:
    _die_with_parent(parent)
    store = MemoryStore()  # referenced here to the end, so the fold's return does not free it

    def exchange() -> None:
        _exchange_timelines(pipe, store, part, index, fold.timeline_cap)

    try:
        folding = _fold_part(folded_events, sources, store, fold, shards, part, until, batch, exchange)
        outcome: Rebuilt | str = asyncio.run(folding)
    except BaseException:
        outcome = traceback.format_exc()
    pipe.send(outcome)
    pipe.close()
    os._exit(0)  # the MemoryStore is not freed object by object: the process is gone


def _exchange_timelines(pipe: Connection, store: MemoryStore, part: Path, index: int, cap: int) -> None:
    """Between the fold and the write: hand each timeline outside this worker's range of owners
    to the worker whose range it is in, and take theirs of this range, so that each part holds
    whole timelines of one range, trimmed to the cap (`merge_stores` copies them part after
    part: no timeline is merged or trimmed there, no entry beyond the cap is written). A post's
    entries are made by its author's shard, so every worker has entries in most timelines.
    Entries go through files beside the part (`<part>.for<worker>`), not through the replay."""
    pipe.send(store.timeline_sizes())
    bounds: list[str] = pipe.recv()
    handed = {}
    for worker in range(len(bounds) + 1):
        if worker != index:
            timelines = store.take_timelines(_in_range(bounds, worker))
            handed[worker] = part.with_name(f"{part.name}.for{worker}")
            handed[worker].write_bytes(msgspec.msgpack.encode(timelines))
    pipe.send(handed)
    received: list[Path] = pipe.recv()
    decoder = msgspec.msgpack.Decoder(HandedTimelines)
    for path in received:
        store.put_timelines(decoder.decode(path.read_bytes()), cap)
        path.unlink()


def _in_range(bounds: list[str], worker: int) -> Callable[[str], bool]:
    """Whether an owner's timeline is `worker`'s to write (`owner_bounds`)."""
    return lambda owner: bisect_right(bounds, owner) == worker


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when the replay that started it dies (SIGKILL included):
    nobody would merge its part."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it died before the request was in place
        os._exit(1)


async def _fold_part(folded_events: Synchronized[int], sources: _Sources, store: MemoryStore,
                     fold: FoldSettings, shards: list[str], part: Path, until: dict[str, str] | None,
                     batch: int, exchange: Callable[[], None]) -> Rebuilt:
    def count(events: int) -> None:
        with folded_events.get_lock():
            folded_events.value += events

    log = SQLiteLog(sources.log, shard_count=sources.shards)
    archive = LocalArchive(sources.archive) if sources.archive is not None else None
    try:
        started, cpu = time.perf_counter(), time.process_time()
        rebuilt = await fold_and_write(log, archive, store, part, fold, until=until, progress=count,
                                       batch=batch, shards=set(shards), part=True,
                                       before_write=exchange)
        rebuilt.seconds = time.perf_counter() - started
        rebuilt.cpu_seconds = time.process_time() - cpu
        return rebuilt
    finally:
        if archive is not None:
            await archive.close()
        await log.close()
