"""The bulk replay path (fanline.replay.bulk_rebuild, projections.sqlite_bulk): folded in memory
and written at once, it gives the same SQLite store as the streaming rebuild, and so does the
tail streamed after it; MemoryStore's timeline key list trims exactly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fanline.replay import bulk_rebuild, rebuild
from fanline.settings import Settings
from fanline.wiring import open_log
from processors.settings import FoldSettings
from projections.items import COMPARED_TABLES, differences
from projections.memory_store import MemoryStore
from projections.records import DeleteTimelineEntries, PutTimelineEntries, TimelineEntry, TrimTimelines
from projections.sqlite_bulk import building_path, has_applied, sync_store, write_store
from projections.sqlite_items import sqlite_rows
from projections.sqlite_store import SQLiteStore
from projections.tables import TABLES
from tests.replay_helpers import THRESHOLD, append, history, more_posts

FOLDS = FoldSettings(strategy="hybrid", celebrity_threshold=THRESHOLD, timeline_cap=30)
BATCH = 97  # many batches, each with trims, over a small history


def same_rows(left: Path, right: Path) -> dict[str, int]:
    """The differing rows per table of two SQLite stores (what `replay --verify` compares)."""
    found = {}
    for spec in COMPARED_TABLES:
        count, shown = differences(spec, sqlite_rows(left, spec), sqlite_rows(right, spec), 3)
        if count:
            found[spec.name] = count
            print(spec.name, shown)
    return found


def row_count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


async def test_bulk_then_tail_equals_the_streaming_rebuild(tmp_path: Path) -> None:
    # One shard: with several, the order in which shards' batches interleave (on the log's read
    # threads) decides a few timeline entries when a small cap trims around deletes, on either
    # path, so two rebuilds of the same log may differ by an entry (see the README).
    settings = Settings.load({"data_dir": tmp_path / "data", "shards": 1}, environ={})
    log = await open_log(settings)
    await append(log, history(120))
    await log.append([("u1", b"not an event")])  # dead-lettered by both paths
    streamed_path, bulk_path = tmp_path / "streamed.db", tmp_path / "bulk.db"
    streamed = SQLiteStore(streamed_path)
    try:
        first = await rebuild(log, None, streamed, FOLDS, batch=BATCH)
        bulk = await bulk_rebuild(log, None, bulk_path, FOLDS, batch=BATCH)
        assert bulk.events == bulk.bulk_events == first.events > 0 and bulk.bulk_rows > 0
        assert not building_path(bulk_path).exists() and has_applied(bulk_path)
        assert row_count(bulk_path, "timelines") > 1000 and row_count(bulk_path, "dead_letters") == 1
        assert same_rows(streamed_path, bulk_path) == {}

        # Events that came after the bulk phase: streamed into its store from where it stopped.
        await append(log, more_posts(120, "tail", 200))
        await rebuild(log, None, streamed, FOLDS, batch=BATCH)
        tail_store = SQLiteStore(bulk_path)
        try:
            tail = await rebuild(log, None, tail_store, FOLDS, batch=BATCH, after=bulk)
        finally:
            await tail_store.close()
        assert tail.events == bulk.events + len(more_posts(120, "t", 200)) and tail.bulk_events == bulk.events
        assert same_rows(streamed_path, bulk_path) == {}
    finally:
        await streamed.close()
        await log.close()


async def test_a_bulk_write_replaces_an_empty_store_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    path = tmp_path / "store-r1.db"
    empty = SQLiteStore(path)  # created (WAL mode), nothing applied
    await empty.close()
    assert not has_applied(path)
    stale = building_path(path)
    stale.write_bytes(b"what a killed bulk write left")

    def failing_rows(spec: object) -> list[tuple[object, ...]]:
        if spec is TABLES[3]:
            raise RuntimeError("killed")
        return []

    with pytest.raises(RuntimeError):
        write_store(path, failing_rows)
    assert not has_applied(path)  # the store at `path` is as it was
    memory = MemoryStore()
    await memory.apply([PutTimelineEntries((TimelineEntry("u", 5, "p", "a"),))], "s", "42")
    assert write_store(path, memory.rows) == 2  # the entry and the applied mark
    store = SQLiteStore(path)
    try:
        assert await store.applied() == {"s": "42"}
        assert [e.post_id for e in await store.timeline_page("u", 10, None)] == ["p"]
    finally:
        await store.close()


async def test_the_timeline_key_list_trims_the_oldest_live_entries() -> None:
    store = MemoryStore()

    def entry(ts: int) -> TimelineEntry:
        return TimelineEntry("u", ts, f"p{ts}", "a")

    await store.apply([PutTimelineEntries(tuple(entry(ts) for ts in range(1, 6)))], "s", "1")
    # The newest deleted and put back, an older one deleted for good, an oldest one added:
    # the key list holds stale and repeated keys, which a trim must skip.
    await store.apply([DeleteTimelineEntries((("u", 5, "p5"), ("u", 3, "p3"))),
                       PutTimelineEntries((entry(5), entry(0))), TrimTimelines(("u",), 3)], "s", "2")
    assert [e.ts for e in await store.timeline_page("u", 10, None)] == [5, 4, 2]
    # Mostly deleted: the key list is rebuilt from the live keys, and trims stay exact.
    await store.apply([PutTimelineEntries(tuple(entry(ts) for ts in range(10, 200)))], "s", "3")
    await store.apply([DeleteTimelineEntries(tuple(("u", ts, f"p{ts}") for ts in range(10, 195)))], "s", "4")
    await store.apply([TrimTimelines(("u",), 4)], "s", "5")
    assert [e.ts for e in await store.timeline_page("u", 10, None)] == [199, 198, 197, 196]
    await store.apply([TrimTimelines(("u",), 0)], "s", "6")
    assert await store.timeline_page("u", 10, None) == []


async def test_a_version_being_built_is_not_fsynced_per_batch_and_is_synced_after(tmp_path: Path) -> None:
    path = tmp_path / "store-r1.db"
    store = SQLiteStore(path, durable=False)
    try:
        assert await store._run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]) == 0  # OFF
        await store.apply([PutTimelineEntries((TimelineEntry("u", 5, "p", "a"),))], "s", "42")
        assert Path(f"{path}-wal").stat().st_size > 0  # the batch is in the WAL only
        sync_store(path)  # with the store still open, as `fanline replay` does before the switch
        assert Path(f"{path}-wal").stat().st_size == 0  # checkpointed into the file
        assert await store.applied() == {"s": "42"}
    finally:
        await store.close()
    live = SQLiteStore(path)
    try:
        assert await live._run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
    finally:
        await live.close()
