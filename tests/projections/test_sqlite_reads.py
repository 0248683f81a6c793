"""SQLiteStore's read side: bounded reads run inline on a read-only connection, each page read
is one statement whose plan is a range scan, and a busy read falls back to the store's thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from projections.records import (
    FeedPost,
    Post,
    PutFollow,
    PutPost,
    PutTimelineEntries,
    PutUser,
    TimelineEntry,
    User,
)
from projections.sqlite_store import (
    AUTHORS_FEED,
    CELEBRITY_FOLLOWEES,
    HYBRID_FEED,
    TIMELINE_FEED,
    SQLiteStore,
)
from projections.store import StoreUnavailable


def _plan(db: Path, sql: str, *params: object) -> str:
    with sqlite3.connect(db) as conn:
        return "\n".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


async def _world(store: SQLiteStore) -> None:
    p = Post("p1", "star", "hello", 10)
    await store.apply(
        [PutUser(User("star", "star", "Star", 5, celebrity=True)), PutFollow("r", "star"), PutPost(p),
         PutTimelineEntries((TimelineEntry("r", 10, "p1", "star"),))],
        "s", "1",
    )


async def test_page_reads_are_key_lookups_and_range_scans(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    await store.close()
    db = tmp_path / "p.db"
    timeline = _plan(db, TIMELINE_FEED, "u", "9", 10)
    assert "SEARCH t USING PRIMARY KEY (user_id=? AND ts_post_id<?)" in timeline
    assert "SEARCH p USING PRIMARY KEY (post_id=?)" in timeline
    assert "TEMP B-TREE" not in timeline  # already in order: no sort
    hybrid = _plan(db, HYBRID_FEED, "u", "9", 10)
    assert "SCAN" not in hybrid.replace("SCAN page", "").replace("SCAN pushed", "")
    assert "SEARCH p USING PRIMARY KEY (author_id=? AND ts_post_id=?)" in hybrid  # by key, per celebrity
    assert "SCAN" not in _plan(db, CELEBRITY_FOLLOWEES, "u").replace("SCAN json_each", "")
    assert "SCAN posts" not in _plan(db, AUTHORS_FEED, '["a"]', "9", 10)


async def test_reads_do_not_wait_for_the_store_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    await _world(store)
    # Hold the store's one thread (as a long commit would): reads still answer, inline.
    held, release = threading.Event(), threading.Event()

    def hold(_: sqlite3.Connection) -> None:
        held.set()
        release.wait(5)

    holding = asyncio.ensure_future(store._run(hold))
    await asyncio.to_thread(held.wait, 5)
    try:
        page = await asyncio.wait_for(store.hybrid_feed("r", 10, None), 1.0)
        assert page == [FeedPost("p1", "star", "star", "hello", 10)]
        assert await store.timeline_feed("r", 10, None) == page
        assert await store.applied() == {"s": "1"}
    finally:
        release.set()
        await holding
    await store.close()


class BusyConnection:
    """A read connection that says what SQLite says when a WAL reader cannot get in."""

    def __init__(self) -> None:
        self.calls = 0

    def execute(self, sql: str, params: Any = ()) -> Any:
        self.calls += 1
        raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        pass


async def test_a_busy_read_is_retried_on_the_store_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    await _world(store)
    real = store._reader
    busy = BusyConnection()
    store._reader = busy  # type: ignore[assignment]
    assert await store.timeline_feed("r", 10, None) == [FeedPost("p1", "star", "star", "hello", 10)]
    assert busy.calls == 1
    store._reader = real
    await store.close()


async def test_the_read_connection_cannot_write(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    with pytest.raises(StoreUnavailable, match=r"readonly|read-only|query_only"):
        await store._read("DELETE FROM users")
    await store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.timeline_feed("r", 10, None)
