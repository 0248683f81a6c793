"""The small world of `fanline up`: deterministic, well formed, written once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from load.world import WorldSpec, ensure_world, existing_world, user_id, world_events
from streams.events import PostCreated, UserFollowed, UserRegistered, decode
from streams.log import Position
from streams.sqlite_log import SQLiteLog


def test_the_same_spec_gives_the_same_events() -> None:
    spec = WorldSpec(users=40)
    assert list(world_events(spec)) == list(world_events(spec))
    assert list(world_events(spec)) != list(world_events(WorldSpec(users=40, seed=8)))


def test_shape() -> None:
    spec = WorldSpec(users=200, posts_per_user=10, popular=5, popular_share=0.6, follows_per_user=15)
    events = list(world_events(spec))
    users = [e for e in events if isinstance(e, UserRegistered)]
    follows = [e for e in events if isinstance(e, UserFollowed)]
    posts = [e for e in events if isinstance(e, PostCreated)]
    assert len(users) == 200 and len(posts) == 2000
    assert len({e.id for e in events}) == len(events)
    edges = [(f.data.follower_id, f.data.followee_id) for f in follows]
    assert len(set(edges)) == len(edges)
    assert all(a != b for a, b in edges)
    known = {u.data.user_id for u in users}
    assert {b for _, b in edges} <= known and {p.data.author_id for p in posts} <= known
    # The popular accounts have by far the most followers.
    followers = Counter(b for _, b in edges)
    top = {name for name, _ in followers.most_common(5)}
    assert top == {user_id(i) for i in range(5)}
    assert min(followers[user_id(i)] for i in range(5)) > 100
    # Users first, then follows, then posts in time order: a post never precedes its author.
    assert [p.ts for p in posts] == sorted(p.ts for p in posts)


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 users"):
        WorldSpec(users=1)
    with pytest.raises(ValueError, match="popular"):
        WorldSpec(users=3, popular=4)


async def test_ensure_world_writes_once(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.db", shard_count=2)
    spec = WorldSpec(users=20, posts_per_user=3)
    written = await ensure_world(log, tmp_path, spec)
    assert written == len(list(world_events(spec)))
    assert existing_world(tmp_path) == {**_fields(spec), "events": written}
    assert await ensure_world(log, tmp_path, spec) == 0
    stored = []
    for shard in await log.shards():
        stored += (await log.reader(shard.shard_id, Position.trim_horizon()).read(10_000)).records
    assert len(stored) == written
    assert {decode(r.data) for r in stored} == set(world_events(spec))
    await log.close()


def _fields(spec: WorldSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in WorldSpec.__dataclass_fields__}
