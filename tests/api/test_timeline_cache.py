"""The page cache answers exactly what a fresh read answers, whatever happened in between.

Random histories (tests/processors/histories.py: registrations and re-registrations with another
handle, follows, unfollows, celebrities crossing the threshold both ways, posts, deletes,
repeats) are folded into a SQLiteStore a few events at a time; after every step each user's
timeline is paged through twice, from the cache (kept across steps, so stale pages are there to
be wrongly served) and afresh, and the bytes must be equal. Then the feed stamp on its own:
what moves it and what must not.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Hashable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.timeline_cache import TimelineCache
from processors.metrics import Metrics
from processors.runner import Runner
from projections.records import (
    DeleteFollow,
    DeletePost,
    DeleteTimelineEntries,
    Mutation,
    Post,
    PutFollow,
    PutPost,
    PutTimelineEntries,
    PutUser,
    TimelineEntry,
    TrimTimelines,
    User,
)
from projections.sqlite_store import SQLiteStore
from projections.timeline import Strategy, TimelinePage, TimelineReader
from streams.delivery import Batch, Delivered
from tests.processors import histories

_ns = iter(range(10**9))
STAMPS_LATE_S = 0.0011


@pytest.fixture(scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(Path(tmp_path_factory.mktemp("cache")) / "store.db")
    yield store
    await store.close()


async def _pages_equal(cache: TimelineCache, fresh: TimelineReader, user_id: str, limit: int) -> None:
    cursor = None
    for _ in range(100):
        cached = await cache.page(user_id, limit, cursor)
        page = await fresh.page(user_id, limit, cursor)
        assert cached == msgspec.json.encode(page), (user_id, cursor)
        cursor = page.next_cursor
        if cursor is None:
            return
    raise AssertionError("paging never ended")


# Histories random search meets too rarely, always run one event per step (threshold 3): a
# reader follows a celebrity who posted; a followee is promoted, then posts (pulled, no longer
# pushed); a celebrity posts after the reader read; a pushed post is deleted; a handle changes.
_FOLLOW_A_CELEBRITY = [("register", 0, False), ("crowd", 0, 3), ("post", 0, 1), ("follow", 5, 0)]
_PROMOTED_THEN_POSTS = [
    ("register", 0, False), ("follow", 5, 0), ("post", 0, 1), ("crowd", 0, 3), ("post", 0, 1)
]
_CELEBRITY_POSTS = [("register", 0, False), ("crowd", 0, 3), ("follow", 5, 0), ("post", 0, 1), ("post", 0, 1)]
_DELETED = [("follow", 5, 3), ("register", 3, False), ("post", 3, 1), ("delete", 0)]
_RENAMED = [("register", 3, False), ("follow", 5, 3), ("post", 3, 1), ("register", 3, True)]


def _explicit(test: Any) -> Any:
    for ops in (_FOLLOW_A_CELEBRITY, _PROMOTED_THEN_POSTS, _CELEBRITY_POSTS, _DELETED, _RENAMED):
        test = example(ops=ops, threshold=3, strategy="hybrid", limit=2, seed=0, one_by_one=True)(test)
    return test


@given(
    ops=histories.operations,
    threshold=histories.thresholds,
    strategy=st.sampled_from(["push", "hybrid"]),
    limit=st.integers(1, 4),
    seed=st.integers(0, 2**32),
    one_by_one=st.booleans(),
)
@_explicit
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
async def test_cached_pages_equal_fresh_reads_after_every_step(
    store: SQLiteStore, ops: list[tuple[Any, ...]], threshold: int, strategy: Strategy, limit: int,
    seed: int, one_by_one: bool,
) -> None:
    ns = f"c{next(_ns)}"
    events = histories.build_history(ns, ops)
    runner = Runner(store, histories.settings_for(strategy, threshold), Metrics())
    fresh = TimelineReader(store, strategy)
    cache = TimelineCache(store, fresh, 2**20)
    users = [f"{ns}u{i}" for i in range(histories.USERS)]
    rng = random.Random(seed)
    shard, done = f"{ns}s", 0
    while done < len(events):
        step = events[done : done + (1 if one_by_one else rng.randint(1, 4))]
        items = [Delivered(shard, str(100 + done + n), event, 0) for n, event in enumerate(step)]
        await runner.handle(Batch(shard, items, millis_behind=0))
        await asyncio.sleep(STAMPS_LATE_S)  # SQLiteStore's stamps may be up to 1 ms late
        done += len(step)
        for user_id in users:
            await _pages_equal(cache, fresh, user_id, limit)


async def _stamp(store: SQLiteStore, user_id: str, authors: tuple[str, ...] = ()) -> Hashable:
    stamp = await store.feed_stamp(user_id, authors)
    assert stamp is not None
    return stamp


def _user(user_id: str, handle: str = "h", followers: int = 0, celebrity: bool = False) -> User:
    return User(user_id, handle, handle.upper(), followers, celebrity)


_POST = Post("p1", "c", "hello", 5)
# Each mutation, and whether it must move the stamp of reader "r"'s page, which pulls celebrity "c".
_MOVES: list[tuple[Mutation, bool]] = [
    (PutTimelineEntries((TimelineEntry("r", 5, "p1", "c"),)), True),
    (PutTimelineEntries((TimelineEntry("other", 5, "p1", "c"),)), False),
    (DeleteTimelineEntries((("r", 5, "p1"),)), True),
    (TrimTimelines(("r",), 10), True),
    (PutFollow("r", "x"), True),
    (PutFollow("x", "r"), False),
    (DeleteFollow("r", "x"), True),
    (PutPost(_POST), True),
    (PutPost(Post("p2", "nobody-followed", "hi", 6)), False),
    (DeletePost("c", "p1", 5), True),
    (PutUser(_user("c", followers=4, celebrity=True)), False),  # counts only: no page shows them
    (PutUser(_user("c", followers=1, celebrity=False)), True),  # demoted
    (PutUser(_user("c", "renamed")), True),
    (PutUser(_user("newcomer")), False),
    (PutUser(_user("star", celebrity=True)), True),  # a new celebrity: pulled by its followers
]


@pytest.mark.parametrize(
    ("mutation", "moves"), _MOVES, ids=[f"{type(m).__name__}-{n}" for n, (m, _) in enumerate(_MOVES)]
)
async def test_the_feed_stamp_moves_exactly_with_what_a_page_shows(
    tmp_path: Path, mutation: Mutation, moves: bool
) -> None:
    store = SQLiteStore(tmp_path / "store.db", stamps_max_age_s=0)
    try:
        await store.apply([PutUser(_user("r")), PutUser(_user("c", followers=3, celebrity=True))], "s", "1")
        before = await _stamp(store, "r", ("c",))
        await store.apply([mutation], "s", "2")
        assert (await _stamp(store, "r", ("c",)) != before) is moves
    finally:
        await store.close()


async def test_another_store_never_gives_an_equal_stamp(tmp_path: Path) -> None:
    first, second = SQLiteStore(tmp_path / "a.db"), SQLiteStore(tmp_path / "b.db")
    try:
        assert await _stamp(first, "r") != await _stamp(second, "r")  # both fresh: all stamps 0
    finally:
        await first.close()
        await second.close()


async def test_pages_showing_an_unregistered_author_are_read_afresh(store: SQLiteStore) -> None:
    reader = TimelineReader(store, "hybrid")
    await store.apply([PutTimelineEntries((TimelineEntry("q-r", 5, "q-p", "q-ghost"),)),
                       PutPost(Post("q-p", "q-ghost", "boo", 5))], "q-s", "1")
    cache = TimelineCache(store, reader, 2**20)
    body = await cache.page("q-r", 10, None)
    assert msgspec.json.decode(body, type=TimelinePage).items[0].author_handle == ""
    await store.apply([PutUser(_user("q-ghost", "ghost"))], "q-s", "2")  # no stamp covers this
    await asyncio.sleep(STAMPS_LATE_S)
    body = await cache.page("q-r", 10, None)
    assert msgspec.json.decode(body, type=TimelinePage).items[0].author_handle == "ghost"


async def test_a_reader_waiting_for_its_own_write_reads_afresh(store: SQLiteStore) -> None:
    reader = TimelineReader(store, "push")
    cache = TimelineCache(store, reader, 2**20)
    await store.apply([PutUser(_user("f-a", "a")), PutUser(_user("f-r", "r"))], "f-s", "1")
    await asyncio.sleep(STAMPS_LATE_S)
    assert msgspec.json.decode(await cache.page("f-r", 10, None), type=TimelinePage).items == []
    await store.apply([PutPost(Post("f-p", "f-a", "hi", 5)),
                       PutTimelineEntries((TimelineEntry("f-r", 5, "f-p", "f-a"),))], "f-s", "2")
    # Within the stamps' millisecond the cached page may still be answered; a fresh read never is.
    fresh = await cache.page("f-r", 10, None, fresh=True)
    assert [i.post_id for i in msgspec.json.decode(fresh, type=TimelinePage).items] == ["f-p"]
