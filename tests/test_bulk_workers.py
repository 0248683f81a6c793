"""The bulk rebuild on several cores (fanline.bulk_workers, projections.sqlite_bulk.merge_stores):
shard groups folded by worker processes, their timelines handed between them by owner, and
merged give the store the streaming rebuild gives, timelines trimmed to the cap; a failing
worker fails the rebuild and leaves no store and no part behind."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from bisect import bisect_right
from pathlib import Path

import msgspec
import psutil
import pytest

from fanline.bulk_workers import owner_bounds, parallel_bulk_rebuild, shard_groups
from fanline.replay import count_events, rebuild
from fanline.settings import Settings
from fanline.wiring import open_log
from load.world import WorldSpec, world_events
from processors.settings import FoldSettings
from projections.memory_store import HandedTimelines, MemoryStore
from projections.records import PutFollow, PutTimelineEntries, TimelineEntry
from projections.sqlite_bulk import has_applied, merge_stores, write_store
from projections.sqlite_store import SQLiteStore
from streams.archive import LocalArchive
from streams.log import Position, Shard
from tests.replay_helpers import THRESHOLD, append, history
from tests.test_replay_bulk import row_count, same_rows
from tests.test_replay_kill import run, start_replay, world_to_replay

BATCH = 97


def settings_for(tmp_path: Path) -> Settings:
    return Settings.load({"data_dir": tmp_path / "data", "shards": 4}, environ={})


async def parallel_and_streamed(tmp_path: Path, settings: Settings, folds: FoldSettings,
                                counted_first: bool = True) -> tuple[Path, Path]:
    """The log of `settings` rebuilt by two workers (balanced by the counting pass's events per
    shard, or without it), and streamed into SQLite by one process."""
    log = await open_log(settings)
    parallel_path, streamed_path = tmp_path / "parallel.db", tmp_path / "streamed.db"
    streamed = SQLiteStore(streamed_path)
    try:
        counted = await count_events(log, None)
        assert len(counted.shard_events) == 4
        counts = counted.shard_events if counted_first else None
        bulk = await parallel_bulk_rebuild(log, None, parallel_path, folds,
                                           counts=counts, workers=2, batch=BATCH)
        assert bulk.workers == 2 and bulk.events == bulk.bulk_events == counted.events
        assert set(bulk.last) == set(counted.shard_events)
        await rebuild(log, None, streamed, folds, batch=BATCH)
    finally:
        await streamed.close()
        await log.close()
    assert has_applied(parallel_path) and not list(tmp_path.glob("parallel.db.*"))  # parts removed
    return parallel_path, streamed_path


async def test_two_workers_give_the_streamed_store_with_deletes_and_dead_letters(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = await open_log(settings)
    await append(log, history(120))
    await log.append([("u1", b"not an event")])  # dead-lettered by the worker folding its shard
    await log.close()
    # A cap no timeline reaches: with deletes, where a cap trims decides the entries (README).
    folds = FoldSettings(strategy="hybrid", celebrity_threshold=THRESHOLD, timeline_cap=800)
    parallel, streamed = await parallel_and_streamed(tmp_path, settings, folds)
    assert row_count(parallel, "timelines") > 1000 and row_count(parallel, "dead_letters") == 1
    assert same_rows(streamed, parallel) == {}


async def test_two_workers_trim_every_timeline_to_the_cap_as_the_live_fold(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = await open_log(settings)
    world = WorldSpec(users=150, posts_per_user=6, popular=3, popular_share=0.5, follows_per_user=9)
    await append(log, list(world_events(world)))
    await log.close()
    for strategy in ("push", "hybrid"):  # push: the celebrities' posts too
        folds = FoldSettings(strategy=strategy, celebrity_threshold=THRESHOLD, timeline_cap=7)
        (tmp_path / strategy).mkdir()
        parallel, streamed = await parallel_and_streamed(tmp_path / strategy, settings, folds,
                                                         counted_first=strategy == "push")
        assert row_count(streamed, "timelines") == row_count(parallel, "timelines") > 150 * 6
        assert same_rows(streamed, parallel) == {}


async def test_handed_timelines_keep_the_newest_of_both_stores() -> None:
    stores = [MemoryStore(), MemoryStore()]
    for n, timestamps in enumerate([(1, 4, 5, 9), (2, 3, 8)]):
        entries = tuple(TimelineEntry("reader", ts, f"p{ts}", f"author{n}") for ts in timestamps)
        entries += (TimelineEntry(f"only{n}", 1, f"q{n}", f"author{n}"),)
        await stores[n].apply([PutTimelineEntries(entries)], f"shard-{n}", "1")
    handed = stores[0].take_timelines(lambda owner: owner == "reader")
    sent = msgspec.msgpack.Decoder(HandedTimelines).decode(msgspec.msgpack.encode(handed))
    stores[1].put_timelines(sent, cap=4)
    reader = await stores[1].timeline_page("reader", 10, None)
    assert [(e.ts, e.author_id) for e in reader] == [(9, "author0"), (8, "author1"), (5, "author0"),
                                                     (4, "author0")]
    assert await stores[0].timeline_page("reader", 10, None) == []
    assert [e.post_id for e in await stores[0].timeline_page("only0", 10, None)] == ["q0"]
    assert stores[0].timeline_sizes() == {"only0": 1}
    assert stores[1].timeline_sizes() == {"reader": 4, "only1": 1}


async def test_merge_copies_each_parts_timelines_and_merges_the_other_tables(tmp_path: Path) -> None:
    parts = []
    for n, owners in enumerate([("a", "b"), ("c",), ()]):
        part = MemoryStore()
        entries = tuple(TimelineEntry(owner, ts, f"{owner}{ts}", "author")
                        for owner in owners for ts in (1, 2))
        follows = [PutFollow(f"follower{n}", followee) for followee in ("x", "y")]
        await part.apply([PutTimelineEntries(entries), *follows], f"shard-{n}", str(n + 1))
        parts.append(tmp_path / f"part{n}.db")
        write_store(parts[-1], part.rows, part=True)
    merged = tmp_path / "merged.db"
    assert merge_stores(merged, parts) == 6 + 2 * 6 + 3
    store = SQLiteStore(merged)
    try:
        for owner in ("a", "b", "c"):
            page = await store.timeline_page(owner, 10, None)
            assert [e.post_id for e in page] == [f"{owner}2", f"{owner}1"]
        assert await store.followers_page("x", 10, None) == ["follower0", "follower1", "follower2"]
        assert await store.applied() == {"shard-0": "1", "shard-1": "2", "shard-2": "3"}
    finally:
        await store.close()


def test_owner_bounds_balance_the_entries_each_worker_writes() -> None:
    sizes = [{"a": 5, "b": 5, "c": 5}, {"a": 5, "d": 10}]
    assert owner_bounds(sizes, 2, cap=800) == ["c"]  # a and b: 15 entries; c and d: 15
    assert owner_bounds(sizes, 3, cap=800) == ["b", "d"]
    assert owner_bounds(sizes, 2, cap=5) == ["c"]  # the cap counts: 5 + 5 | 5 + 5
    assert owner_bounds(sizes, 1, cap=800) == []
    assert owner_bounds([{"x": 1}], 3, cap=800) == []  # nothing to share: one worker writes it
    assert bisect_right(["c"], "c") == 1  # a bound is where the next range begins


def test_shard_groups_keep_lineages_together_and_balance_events() -> None:
    def shard(shard_id: str, *parents: str) -> Shard:
        return Shard(shard_id, parents, 0, 1)

    shards = [shard("a"), shard("b"), shard("c"), shard("a1", "a"), shard("a2", "a"), shard("ab", "a1", "b")]
    in_log = {s.shard_id: s for s in shards}
    order = [s.shard_id for s in shards]
    counts = {"a": 10, "b": 10, "c": 25, "a1": 5, "a2": 5, "ab": 1, "empty": 0}
    # a's lineage (a, a1, a2, ab) holds b through ab's two parents: 31 events against c's 25.
    assert shard_groups(order, in_log, counts, 2) == [["a", "b", "a1", "a2", "ab"], ["c"]]
    assert shard_groups(order, in_log, counts, 1) == [order]
    assert shard_groups(["x", "y", "z"], {}, {"x": 5, "y": 4, "z": 3}, 2) == [["x"], ["y", "z"]]
    assert shard_groups(["x", "y"], {}, {"x": 5}, 4) == [["x"]]  # nothing to fold in y


async def test_a_failing_worker_fails_the_rebuild_and_leaves_nothing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = await open_log(settings)
    await append(log, history(60))
    archive = LocalArchive(settings.data_dir / "archive")
    shard_id = (await log.shards())[0].shard_id
    records = (await log.reader(shard_id, Position.trim_horizon()).read(10_000)).records
    await archive.write(shard_id, records)
    for held in (settings.data_dir / "archive" / shard_id).glob("*.ndjson.gz"):
        held.write_bytes(b"\0" * held.stat().st_size)  # the archive's file is damaged
    path = tmp_path / "store-r1.db"
    folds = FoldSettings(strategy="hybrid", celebrity_threshold=THRESHOLD)
    try:
        counted = {s.shard_id: 1 for s in await log.shards()}
        with pytest.raises(RuntimeError, match=r"replay worker .* failed"):
            await parallel_bulk_rebuild(log, archive, path, folds, counts=counted, workers=2)
    finally:
        await log.close()
    assert not path.exists() and not list(tmp_path.glob("store-r1.db*"))


async def test_workers_die_with_a_killed_replay_and_the_next_one_clears_their_parts(tmp_path: Path) -> None:
    _, events, env = await world_to_replay(tmp_path)
    child = start_replay(["--workers", "2"], env)
    try:
        deadline = time.monotonic() + 60
        workers: list[psutil.Process] = []
        while len(workers) < 2:  # kill it while its workers fold
            assert time.monotonic() < deadline and child.poll() is None, "it ended before it was killed"
            children = psutil.Process(child.pid).children()
            workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
            await asyncio.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []  # PR_SET_PDEATHSIG: nobody would merge their parts

    resumed = run(["replay"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert '"path": "bulk"' in resumed.stdout and '"workers": 2' in resumed.stdout
    assert f'"bulk_events": {events}' in resumed.stdout
    assert not list(tmp_path.glob("store-r1.db.part*"))


async def test_a_killed_worker_fails_the_rebuild_and_the_others_end_with_it(tmp_path: Path) -> None:
    settings, _, _ = await world_to_replay(tmp_path)
    log = await open_log(settings)
    path = tmp_path / "store-r1.db"
    folds = FoldSettings(strategy="hybrid", celebrity_threshold=THRESHOLD)
    try:
        rebuilding = asyncio.create_task(parallel_bulk_rebuild(log, None, path, folds, workers=2))
        deadline = time.monotonic() + 60
        workers: list[psutil.Process] = []
        while len(workers) < 2:
            assert time.monotonic() < deadline and not rebuilding.done(), "it ended before a kill"
            workers = [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]
            await asyncio.sleep(0.01)
        workers[0].kill()
        with pytest.raises(RuntimeError, match=r"replay worker .* ended without a result \(exit code -9"):
            await rebuilding
    finally:
        await log.close()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []  # the other worker too: nobody would merge its part
    assert not path.exists() and not list(tmp_path.glob("store-r1.db*"))
