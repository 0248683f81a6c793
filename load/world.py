"""A small deterministic synthetic world for `fanline up`: users, follows, posts, as events.

`world_events(WorldSpec(users=300))` yields the same events on every run (same ids, same ts), so
writing a world twice (say, after a crash in the middle) changes no projection: every effect of
an event is idempotent. A few accounts are popular (most users follow them); everyone also
follows a handful of others at random. The full generator with the tier distribution of
DESIGN.md is a later issue; this one keeps the same shape so it can grow into it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from streams.events import (
    Event,
    FollowData,
    PostCreated,
    PostCreatedData,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
    encode,
    partition_key,
)
from streams.log import Log

# 2026-01-01T00:00:00Z: a fixed clock, so a rewrite of the world repeats every ts.
EPOCH_MS = 1_767_225_600_000
MARKER = "world.json"
APPEND_BATCH = 500

_WORDS = (
    "stream", "shard", "event", "timeline", "follow", "post", "fan", "out", "push", "pull", "hybrid",
    "replay", "lease", "checkpoint", "kinesis", "dynamo", "sqlite", "coffee", "morning", "launch",
    "ship", "deploy", "review", "latency", "tail", "cache", "graph", "celebrity", "cursor", "page",
    "merge", "order", "hello", "world", "today", "again", "finally", "weekend",
)


@dataclass(frozen=True, slots=True)
class WorldSpec:
    users: int = 300
    posts_per_user: int = 10
    # The first `popular` users are followed by about `popular_share` of everyone.
    popular: int = 5
    popular_share: float = 0.6
    # Each user also follows this many others, chosen at random.
    follows_per_user: int = 15
    seed: int = 7

    def __post_init__(self) -> None:
        if self.users < 2:
            raise ValueError(f"a world needs at least 2 users, got {self.users}")
        if not 0 <= self.popular <= self.users or not 0 <= self.popular_share <= 1:
            raise ValueError("popular must be within 0..users and popular_share within 0..1")


def user_id(index: int) -> str:
    return f"w{index:06d}"


def world_events(spec: WorldSpec) -> Iterator[Event]:
    """Registrations, then follows, then posts in time order (one second apart)."""
    rng = random.Random(spec.seed)
    ts = EPOCH_MS
    for i in range(spec.users):
        user = UserRegisteredData(user_id=user_id(i), handle=f"user_{i:04d}", display_name=f"User {i}")
        yield UserRegistered(id=f"world-user-{i}", ts=ts, data=user)
    for i in range(spec.users):
        followees = {p for p in range(spec.popular) if rng.random() < spec.popular_share}
        others = min(spec.follows_per_user, spec.users - 1)
        followees.update(rng.sample(range(spec.users), others))
        followees.discard(i)
        for j in sorted(followees):
            edge = FollowData(follower_id=user_id(i), followee_id=user_id(j))
            yield UserFollowed(id=f"world-follow-{i}-{j}", ts=ts, data=edge)
    for n in range(spec.users * spec.posts_per_user):
        ts += 1000
        author = rng.randrange(spec.users)
        body = " ".join(rng.choices(_WORDS, k=rng.randint(3, 12)))
        post = PostCreatedData(post_id=f"wp{n:08d}", author_id=user_id(author), body=body)
        yield PostCreated(id=f"world-post-{n}", ts=ts, data=post)


async def write_world(log: Log, spec: WorldSpec) -> int:
    """Append the world's events in batches through the Log port; the number appended."""
    batch: list[tuple[str, bytes]] = []
    count = 0
    for event in world_events(spec):
        batch.append((partition_key(event), encode(event)))
        if len(batch) == APPEND_BATCH:
            await log.append(batch)
            count, batch = count + len(batch), []
    if batch:
        await log.append(batch)
        count += len(batch)
    return count


def existing_world(data_dir: Path) -> dict[str, object] | None:
    """The marker `ensure_world` leaves once a world is fully written, or None."""
    path = data_dir / MARKER
    if not path.exists():
        return None
    marker: dict[str, object] = json.loads(path.read_text())
    return marker


async def ensure_world(log: Log, data_dir: Path, spec: WorldSpec) -> int:
    """Write the world unless one was written before; the events appended now (0 if none)."""
    if existing_world(data_dir) is not None:
        return 0
    count = await write_world(log, spec)
    data_dir.mkdir(parents=True, exist_ok=True)
    # Written last: a crash before this line rewrites the same events next time (harmless).
    (data_dir / MARKER).write_text(json.dumps({**asdict(spec), "events": count}))
    return count
