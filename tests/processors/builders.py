"""Small event builders and a one-shard driver for the unit tests."""

from __future__ import annotations

import itertools

from processors.runner import Runner
from streams.delivery import Batch, Delivered
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
)

_ids = itertools.count(1)


def register(user_id: str, handle: str | None = None) -> UserRegistered:
    n = next(_ids)
    return UserRegistered(id=f"e{n}", ts=n, data=UserRegisteredData(user_id, handle or f"h_{user_id}"))


def follow(follower: str, followee: str) -> UserFollowed:
    n = next(_ids)
    return UserFollowed(id=f"e{n}", ts=n, data=FollowData(follower, followee))


def unfollow(follower: str, followee: str) -> UserUnfollowed:
    n = next(_ids)
    return UserUnfollowed(id=f"e{n}", ts=n, data=FollowData(follower, followee))


def post(author: str, post_id: str, ts: int | None = None) -> PostCreated:
    n = next(_ids)
    return PostCreated(id=f"e{n}", ts=n if ts is None else ts,
                       data=PostCreatedData(post_id, author, f"body of {post_id}"))


def delete(author: str, post_id: str) -> PostDeleted:
    n = next(_ids)
    return PostDeleted(id=f"e{n}", ts=n, data=PostDeletedData(post_id, author))


class OneShard:
    """Feeds events to a runner as batches of one shard with growing sequence numbers."""

    def __init__(self, runner: Runner, shard_id: str = "s0") -> None:
        self.runner = runner
        self.shard_id = shard_id
        self.sequence = 0

    def batch(self, *events: Event) -> Batch:
        items: list[Delivered | object] = []
        for event in events:
            self.sequence += 1
            items.append(Delivered(self.shard_id, str(self.sequence), event, 0))
        return Batch(self.shard_id, items, millis_behind=0)  # type: ignore[arg-type]

    async def send(self, *events: Event) -> Batch:
        batch = self.batch(*events)
        await self.runner.handle(batch)
        return batch
