"""The read model: cursors, paging while posts arrive, dedup, deleted posts, hydration."""

from __future__ import annotations

import base64

import pytest

from processors.runner import Runner
from processors.settings import FoldSettings
from projections.memory_store import MemoryStore
from projections.records import Post, PutPost, PutTimelineEntries, TimelineEntry
from projections.timeline import (
    STRATEGIES,
    BadCursor,
    Strategy,
    TimelineReader,
    decode_cursor,
    encode_cursor,
)
from tests.processors.builders import OneShard, follow, post, register


def test_a_cursor_round_trips() -> None:
    assert decode_cursor(encode_cursor((123, "p-1"))) == (123, "p-1")
    assert decode_cursor(None) is None


@pytest.mark.parametrize(
    "cursor",
    ["%%%", "bm90IGpzb24", base64.urlsafe_b64encode(b'{"ts": 1}').decode(),
     base64.urlsafe_b64encode(b'[1, ""]').decode(), base64.urlsafe_b64encode(b'["1", "p"]').decode()],
)
async def test_a_bad_cursor_is_a_clear_error(cursor: str) -> None:
    reader = TimelineReader(MemoryStore(), "hybrid")
    with pytest.raises(BadCursor, match="bad cursor"):
        await reader.page("u", 10, cursor)
    with pytest.raises(ValueError):  # BadCursor is a ValueError
        await reader.posts_page("u", 10, cursor)


async def test_a_bad_limit_or_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        await TimelineReader(MemoryStore(), "push").page("u", 0)
    with pytest.raises(ValueError, match="strategy"):
        TimelineReader(MemoryStore(), "fanout")  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_pages_while_posts_arrive_neither_skip_nor_repeat(strategy: Strategy) -> None:
    store = MemoryStore()
    # Threshold 2: "a" (two followers) is a celebrity, pulled under hybrid; "b" is pushed.
    shard = OneShard(Runner(store, FoldSettings(strategy, celebrity_threshold=2)))
    await shard.send(register("a"), register("b"), register("r"), register("z"),
                     follow("r", "a"), follow("z", "a"), follow("r", "b"))
    await shard.send(*(post("ab"[i % 2], f"p{i:02d}", ts=100 + i // 3) for i in range(12)))
    reader = TimelineReader(store, strategy)
    seen: list[str] = []
    cursor = None
    n = 100
    while True:
        page = await reader.page("r", 4, cursor)
        seen += [item.post_id for item in page.items]
        # Newer posts arrive between pages (and one with a ts tied to what was just shown).
        cursor = page.next_cursor
        if cursor is None:
            break
        n += 1
        tied = page.items[0].created_at
        await shard.send(post("a", f"new{n}", ts=1000 + n), post("b", f"tie{n}", ts=tied))
    original = [f"p{i:02d}" for i in range(12)]
    assert sorted(p for p in seen if p.startswith("p")) == original
    assert len(seen) == len(set(seen))
    keys = [(100 + i // 3, f"p{i:02d}") for i in range(12)]
    assert [p for p in seen if p.startswith("p")] == [k[1] for k in sorted(keys, reverse=True)]


async def test_hybrid_dedups_a_post_both_pushed_and_pulled_and_hydrates_it() -> None:
    store = MemoryStore()
    shard = OneShard(Runner(store, FoldSettings("hybrid", celebrity_threshold=2)))
    await shard.send(register("a", "alice"), follow("r", "a"), post("a", "p1", ts=5))
    await shard.send(follow("z", "a"))  # a is now a celebrity: p1 is pushed to r and pulled
    assert (await store.users(["a"]))["a"].celebrity
    page = await TimelineReader(store, "hybrid").page("r", 10)
    assert [(i.post_id, i.author_handle, i.body, i.created_at) for i in page.items] == [
        ("p1", "alice", "body of p1", 5)
    ]
    assert page.next_cursor is None


async def test_stale_entries_of_deleted_posts_are_skipped_and_pages_still_fill() -> None:
    store = MemoryStore()
    live = [Post(f"live{i}", "a", "x", 10 + i) for i in range(3)]
    stale = [TimelineEntry("r", 100 + i, f"gone{i}", "a") for i in range(5)]  # no such posts
    await store.apply(
        [*(PutPost(p) for p in live),
         PutTimelineEntries((*stale, *(TimelineEntry("r", p.ts, p.post_id, "a") for p in live)))],
        "s0", "1",
    )
    page = await TimelineReader(store, "push").page("r", 2)
    assert [i.post_id for i in page.items] == ["live2", "live1"]
    assert page.items[0].author_handle == ""  # "a" never registered
    rest = await TimelineReader(store, "push").page("r", 2, page.next_cursor)
    assert [i.post_id for i in rest.items] == ["live0"]
    assert rest.next_cursor is None


async def test_posts_page_lists_an_authors_posts_newest_first() -> None:
    store = MemoryStore()
    shard = OneShard(Runner(store, FoldSettings("pull")))
    await shard.send(register("a"), *(post("a", f"p{i}", ts=i) for i in range(5)), post("b", "q", ts=9))
    reader = TimelineReader(store, "pull")
    first = await reader.posts_page("a", 3)
    second = await reader.posts_page("a", 3, first.next_cursor)
    assert [i.post_id for i in first.items + second.items] == ["p4", "p3", "p2", "p1", "p0"]
    assert second.next_cursor is None
