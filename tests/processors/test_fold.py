"""Unit tests of the folds: hysteresis, no post vanishing across a crossing, cap, edges."""

from __future__ import annotations

import pytest

from processors.fold import Rejected, fold_event, is_celebrity
from processors.runner import Runner
from processors.settings import FoldSettings
from processors.state import BatchState, UserState
from projections.memory_store import MemoryStore
from projections.records import (
    DeleteTimelineEntries,
    Post,
    PutFollow,
    PutTimelineEntries,
    PutUser,
    TimelineEntry,
    TrimTimelines,
    User,
)
from projections.timeline import Strategy, TimelineReader
from tests.processors.builders import OneShard, delete, follow, post, register, unfollow


@pytest.mark.parametrize(
    ("followers", "was", "expected"),
    [
        (9, False, False),  # below the threshold: not yet
        (10, False, True),  # at the threshold: becomes one
        (9, True, True),  # 90 %: still one (hysteresis)
        (8, True, False),  # below 90 %: stops
        (45_000, True, True),
        (44_999, True, False),
    ],
)
def test_celebrity_flag_has_hysteresis(followers: int, was: bool, expected: bool) -> None:
    threshold = 10 if followers < 100 else 50_000
    assert is_celebrity(followers, was, threshold) is expected


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="strategy"):
        FoldSettings(strategy="fanout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeline_cap"):
        FoldSettings(timeline_cap=0)


def _state(user: User | None, followers: set[str], posts: list[Post] | None = None) -> BatchState:
    uid = user.user_id if user else "a"
    return BatchState({uid: UserState(user, followers, posts or [])}, {})


def test_follow_writes_an_absolute_count_and_backfills_when_pushed() -> None:
    settings = FoldSettings("hybrid", celebrity_threshold=3, backfill_depth=2)
    posts = [Post("p3", "a", "x", 30), Post("p2", "a", "x", 20), Post("p1", "a", "x", 10)]
    state = _state(User("a", "aa", ""), {"b"}, posts)
    mutations = fold_event(state, follow("c", "a"), settings)
    assert mutations[0] == PutTimelineEntries(
        (TimelineEntry("c", 30, "p3", "a"), TimelineEntry("c", 20, "p2", "a"))
    )
    assert mutations[1] == TrimTimelines(("c",), settings.timeline_cap)
    assert mutations[2:] == [PutFollow("c", "a"), PutUser(User("a", "aa", "", 2, False))]
    assert state.users["a"].followers == {"b", "c"}


def test_the_follow_that_makes_a_celebrity_under_hybrid_backfills_nothing() -> None:
    settings = FoldSettings("hybrid", celebrity_threshold=2)
    state = _state(User("a", "aa", "", 1), {"b"}, [Post("p1", "a", "x", 10)])
    mutations = fold_event(state, follow("c", "a"), settings)
    assert mutations == [PutFollow("c", "a"), PutUser(User("a", "aa", "", 2, True))]


def test_self_follows_are_ignored() -> None:
    state = _state(User("a", "aa", ""), set())
    assert fold_event(state, follow("a", "a"), FoldSettings()) == []
    assert fold_event(state, unfollow("a", "a"), FoldSettings()) == []
    assert state.users["a"].followers == set()


def test_pull_writes_no_timeline_entries() -> None:
    settings = FoldSettings("pull")
    state = _state(User("a", "aa", ""), {"b", "c"})
    for event in [post("a", "p1"), follow("d", "a"), unfollow("b", "a"), delete("a", "p1")]:
        for mutation in fold_event(state, event, settings):
            assert not isinstance(mutation, PutTimelineEntries | DeleteTimelineEntries | TrimTimelines)


def test_a_rejected_event_leaves_the_state_as_it_was() -> None:
    state = _state(User("a", "aa", ""), {"b"})
    state.known_posts["p1"] = Post("p1", "z", "someone else's", 5)
    with pytest.raises(Rejected, match="belongs to"):
        fold_event(state, delete("a", "p1"), FoldSettings("push"))
    with pytest.raises(Rejected, match="already belongs"):
        fold_event(state, post("a", "p1"), FoldSettings("push"))
    assert state.known_posts == {"p1": Post("p1", "z", "someone else's", 5)}
    assert state.users["a"].posts == []


# --- through the runner and the reader ------------------------------------------------------------


async def _timeline(store: MemoryStore, strategy: Strategy, user_id: str) -> list[str]:
    page = await TimelineReader(store, strategy).page(user_id, 100)
    return [item.post_id for item in page.items]


async def test_a_post_never_vanishes_across_a_crossing_either_way() -> None:
    store = MemoryStore()
    settings = FoldSettings("hybrid", celebrity_threshold=10)
    shard = OneShard(Runner(store, settings))
    fans = [f"f{i}" for i in range(10)]
    await shard.send(register("a"), *(follow(f, "a") for f in fans[:9]), post("a", "p1"))
    assert (await store.users(["a"]))["a"].celebrity is False
    await shard.send(follow(fans[9], "a"))  # 10 followers: a celebrity now
    assert (await store.users(["a"]))["a"].celebrity is True
    await shard.send(post("a", "p2"))  # pulled at read time, not pushed
    for fan in fans:
        assert await _timeline(store, "hybrid", fan) == ["p2", "p1"]
    await shard.send(unfollow("f0", "a"))  # 9 = 90 %: still a celebrity
    assert (await store.users(["a"]))["a"].celebrity is True
    await shard.send(unfollow("f1", "a"))  # 8 < 90 %: no longer one
    assert (await store.users(["a"]))["a"].celebrity is False
    for fan in fans[2:]:
        assert await _timeline(store, "hybrid", fan) == ["p2", "p1"]
    for fan in fans[:2]:
        assert await _timeline(store, "hybrid", fan) == []  # unfollowed: cleaned up
    await shard.send(post("a", "p3"))  # pushed again
    assert await _timeline(store, "hybrid", "f5") == ["p3", "p2", "p1"]


async def test_timelines_are_capped_and_own_posts_are_in_them() -> None:
    store = MemoryStore()
    shard = OneShard(Runner(store, FoldSettings("push", timeline_cap=3)))
    await shard.send(register("a"), follow("b", "a"))
    await shard.send(*(post("a", f"p{i}") for i in range(5)))
    await shard.send(post("b", "q1"))
    assert await _timeline(store, "push", "b") == ["q1", "p4", "p3"]
    assert await _timeline(store, "push", "a") == ["p4", "p3", "p2"]


async def test_registration_keeps_counts_and_deletes_remove_the_post_everywhere() -> None:
    store = MemoryStore()
    shard = OneShard(Runner(store, FoldSettings("push")))
    await shard.send(register("a"), follow("b", "a"), follow("c", "a"), post("a", "p1"))
    await shard.send(register("a", "renamed"))
    assert (await store.users(["a"]))["a"] == User("a", "renamed", "", 2, False)
    await shard.send(delete("a", "p1"), delete("a", "p1"))  # twice: the second is a no-op
    for user_id in "abc":
        assert await store.timeline_page(user_id, 10, None) == []
    assert await store.posts_by_id(["p1"]) == {}
