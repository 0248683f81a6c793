"""The tiered world generator: shares, following ranges, popularity order, cap, determinism, loading."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from fanline import versions
from fanline.cli import main
from fanline.settings import Settings
from fanline.wiring import open_store
from load.loader import load_events
from load.tiers import TIERS, WEEK_MS, TieredWorld
from load.world import user_id
from processors.settings import FoldSettings
from projections.versions import Versions
from streams.events import PostCreated, UserFollowed, UserRegistered

WORLD = TieredWorld(users=1000, seed=3, posts_per_user=2)


def _tier_members(world: TieredWorld) -> dict[str, range]:
    out, start = {}, 0
    for tier, size in zip(TIERS, world.tier_sizes, strict=True):
        out[tier.name] = range(start, start + size)
        start += size
    return out


def test_tier_shares() -> None:
    assert WORLD.tier_sizes == (10, 140, 850)
    assert TieredWorld(users=100_000).tier_sizes == (1000, 14_000, 85_000)
    assert sum(TieredWorld(users=7).tier_sizes) == 7 and min(TieredWorld(users=7).tier_sizes) >= 1


def test_following_ranges_are_kept_exactly() -> None:
    for name, members in _tier_members(WORLD).items():
        lo, hi = next(t.following for t in TIERS if t.name == name)
        counts = [len(WORLD.followees[i]) for i in members]
        assert lo <= min(counts) and max(counts) <= hi, name
        # Drawn across the range, not bunched at one end.
        assert min(counts) < lo + (hi - lo) / 4 and max(counts) > hi - (hi - lo) / 4, name


def test_no_self_follow_no_repeat_and_followers_capped() -> None:
    for me, row in enumerate(WORLD.followees):
        assert me not in row and len(set(row)) == len(row) and list(row) == sorted(row)
    # A world so small that the ranges exceed it: following and followers capped at N-1.
    tiny = TieredWorld(users=40, seed=1)
    assert all(len(row) == 39 for row in tiny.followees)
    assert max(tiny.follower_counts()) == 39


def test_celebrities_are_followed_most_then_influencers() -> None:
    followers = WORLD.follower_counts()
    medians = {name: statistics.median(followers[i] for i in members)
               for name, members in _tier_members(WORLD).items()}
    assert medians["celebrity"] > medians["influencer"] > medians["regular"]
    threshold = WORLD.celebrity_threshold()
    assert sorted(followers, reverse=True)[9] == threshold
    stats = {s.tier: s for s in WORLD.distribution()}
    assert stats["celebrity"].followers.min <= threshold <= stats["celebrity"].followers.max
    assert stats["regular"].users == 850 and stats["regular"].following.min >= 50


def test_the_same_seed_gives_the_same_world() -> None:
    small = TieredWorld(users=60, seed=5, posts_per_user=2)
    again = TieredWorld(users=60, seed=5, posts_per_user=2)
    assert list(small.events()) == list(again.events())
    assert small.followees != TieredWorld(users=60, seed=6).followees


def test_events_registrations_then_follows_then_posts_in_the_last_week() -> None:
    world = TieredWorld(users=50, seed=2, posts_per_user=3)
    events = list(world.events())
    assert len(events) == world.event_count() and len({e.id for e in events}) == len(events)
    kinds = [type(e) for e in events]
    first_follow, first_post = kinds.index(UserFollowed), kinds.index(PostCreated)
    assert set(kinds[:first_follow]) == {UserRegistered}
    assert set(kinds[first_follow:first_post]) == {UserFollowed}
    posts = [e for e in events if isinstance(e, PostCreated)]
    assert len(posts) == 150 and [p.ts for p in posts] == sorted(p.ts for p in posts)
    assert all(world.now_ms - WEEK_MS <= p.ts < world.now_ms for p in posts)
    assert Counter(p.data.author_id for p in posts) == {user_id(i): 3 for i in range(50)}


def test_bad_worlds_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 users"):
        TieredWorld(users=2)
    with pytest.raises(ValueError, match="posts_per_user"):
        TieredWorld(users=10, posts_per_user=-1)


async def test_loading_folds_the_world_into_the_store(tmp_path: Path) -> None:
    world = TieredWorld(users=60, seed=4, posts_per_user=2)
    settings = Settings.load({"data_dir": tmp_path, "celebrity_threshold": world.celebrity_threshold()},
                             environ={})
    loaded = await load_events(settings, world.events(), world.event_count(), progress=False)
    assert loaded.events == world.event_count()
    store = await open_store(settings)
    try:
        users = await store.users([user_id(i) for i in range(60)])
        assert [users[user_id(i)].followers for i in range(60)] == world.follower_counts()
        assert sum(u.celebrity for u in users.values()) >= 1  # the top 1 %: pulled under hybrid
        assert await store.following_ids(user_id(5)) == [user_id(j) for j in world.followees[5]]
        regular = user_id(59)
        assert await store.timeline_page(regular, 5, None)  # its pushed timeline is not empty
    finally:
        await store.close()


def test_the_world_command_prints_the_distribution_and_refuses_a_second_world(tmp_path: Path) -> None:
    args = ["world", "--users", "40", "--posts", "1", "--data-dir", str(tmp_path), "--no-progress"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "celebrity" in first.output and "influencer" in first.output and "regular" in first.output
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 2 and "already holds a world" in second.output


async def test_loading_after_a_replay_folds_into_the_active_version_with_its_settings(tmp_path: Path) -> None:
    world = TieredWorld(users=60, seed=4, posts_per_user=2)
    # The environment says hybrid; the active version r1 was built (by a replay) as push.
    settings = Settings.load({"data_dir": tmp_path, "celebrity_threshold": world.celebrity_threshold()},
                             environ={})
    pointer = await versions.open_pointer(settings, create=True)
    await pointer.set(Versions(active="r1", fold={"r1": versions.fold_record(FoldSettings(strategy="push"))}))
    await pointer.close()
    await load_events(settings, world.events(), world.event_count(), progress=False)
    assert not (tmp_path / "store.db").exists() and not (tmp_path / "leases.db").exists()
    r1 = await versions.open_store_version(settings, "r1")
    try:
        counts = world.follower_counts()
        celebrity = counts.index(max(counts))  # over the threshold: hybrid would pull, push pushes
        assert max(counts) >= world.celebrity_threshold()
        follower = next(i for i in range(60) if celebrity in world.followees[i])
        pushed = await r1.timeline_page(user_id(follower), 200, None)
        assert any(e.author_id == user_id(celebrity) for e in pushed)  # push: celebrities pushed too
    finally:
        await r1.close()
