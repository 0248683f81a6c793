"""Shared by the replay tests: a history with every kind of event, live processing, waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fanline import versions
from fanline.processing import run_processors
from fanline.settings import Settings
from fanline.wiring import fold_settings
from load.world import EPOCH_MS, WorldSpec, user_id, world_events
from processors.metrics import Metrics
from streams.events import (
    Event,
    FollowData,
    PostCreated,
    PostCreatedData,
    PostDeleted,
    PostDeletedData,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
    UserUnfollowed,
    encode,
    partition_key,
)
from streams.log import Log, Position

# With this threshold the world's popular accounts are celebrities (hybrid pulls them), and the
# unfollows below demote one of them (its posts are then pushed to its followers).
THRESHOLD = 120


def history(users: int, tag: str = "h") -> list[Event]:
    """A small world, then unfollows (a demotion), deletes, a re-registration, more posts."""
    spec = WorldSpec(users=users, posts_per_user=4, popular=3, popular_share=0.5, follows_per_user=6)
    events = list(world_events(spec))
    ts = EPOCH_MS + 10**8
    followers_of_0 = [e.data.follower_id for e in events
                      if isinstance(e, UserFollowed) and e.data.followee_id == user_id(0)]
    for n, follower in enumerate(followers_of_0[: len(followers_of_0) // 3]):
        events.append(UserUnfollowed(id=f"{tag}-unf-{n}", ts=ts + n,
                                     data=FollowData(follower_id=follower, followee_id=user_id(0))))
    posts = [e for e in events if isinstance(e, PostCreated)]
    for n, post in enumerate(posts[::7]):
        data = PostDeletedData(post_id=post.data.post_id, author_id=post.data.author_id)
        events.append(PostDeleted(id=f"{tag}-del-{n}", ts=ts + 1000 + n, data=data))
    renamed = UserRegisteredData(user_id=user_id(1), handle="renamed", display_name="R")
    events.append(UserRegistered(id=f"{tag}-rereg", ts=ts + 2000, data=renamed))
    events += more_posts(users, tag, 40)
    return events


def more_posts(users: int, tag: str, count: int, start_ts: int = EPOCH_MS + 2 * 10**8) -> list[Event]:
    events: list[Event] = []
    for n in range(count):
        author = user_id((n * 7) % users)
        post = PostCreatedData(post_id=f"{tag}p{n}", author_id=author, body=f"more {n}")
        events.append(PostCreated(id=f"{tag}-post-{n}", ts=start_ts + n * 10, data=post))
        if n % 5 == 0:  # new follows keep the follow graph (and backfills) moving too
            events.append(UserFollowed(id=f"{tag}-fol-{n}", ts=start_ts + n * 10 + 1, data=FollowData(
                follower_id=user_id((n * 3 + 1) % users), followee_id=author)))
    return events


async def append(log: Log, events: list[Event], batch: int = 500) -> None:
    for i in range(0, len(events), batch):
        await log.append([(partition_key(e), encode(e)) for e in events[i:i + batch]])


async def caught_up(settings: Settings, log: Log) -> bool:
    """Whether the active version has applied every record of the stream (and the archive holds it)."""
    store = await versions.open_store_version(settings, await versions.active_version(settings))
    archive = await versions.open_archive(settings)
    try:
        applied = await store.applied()
        marks = await archive.marks() if archive is not None else None
        for shard in await log.shards():
            last = applied.get(shard.shard_id)
            reader = log.reader(shard.shard_id, Position.after(last) if last else Position.trim_horizon())
            records = (await reader.read(10_000)).records
            if records:
                return False
            if marks is not None and last is not None and marks.get(shard.shard_id) != last:
                return False
        return True
    finally:
        await store.close()
        if archive is not None:
            await archive.close()


async def wait_for(check: Callable[[], object], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s")
        await asyncio.sleep(0.2)


class Processors:
    """`fanline process` in this process: the runner (following the pointer) and the archiver."""

    def __init__(self, settings: Settings, log: Log) -> None:
        self.callbacks: list[Callable[[], None]] = []
        self.task = asyncio.create_task(run_processors(
            settings, log, fold_settings(settings), Metrics(), "test-worker", self.callbacks.append))

    async def stop(self) -> None:
        for callback in self.callbacks:
            callback()
        await asyncio.wait_for(self.task, 30)
