"""A small world for the read tests: six users, a celebrity (threshold 3), folded by the real Runner."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from api.consistency import encode_token
from processors.metrics import Metrics
from processors.runner import Runner
from processors.settings import FoldSettings
from projections.memory_store import MemoryStore
from streams.delivery import Batch, Delivered
from streams.events import (
    Event,
    FollowData,
    PostCreated,
    PostCreatedData,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
)

# ann, bob, cat, dan follow each other in a pattern; eve is followed by 3 (>= threshold): a celebrity.
USERS = ["ann", "bob", "cat", "dan", "eve", "fay"]
FOLLOWS = [
    ("ann", "bob"), ("ann", "cat"), ("ann", "eve"),
    ("bob", "cat"), ("bob", "dan"), ("bob", "eve"), ("bob", "fay"),
    ("cat", "dan"), ("cat", "eve"), ("cat", "fay"),
    ("dan", "ann"),
]


class Feeder:
    """Folds events through the real Runner into the store, one event per batch."""

    def __init__(self, store: MemoryStore) -> None:
        self.runner = Runner(store, FoldSettings(strategy="hybrid", celebrity_threshold=3),
                             Metrics(CollectorRegistry()))
        self.sequence = 0
        self.ts = 1_700_000_000_000

    async def __call__(self, *events: Event) -> str:
        for event in events:
            self.sequence += 1
            delivered = Delivered("shard-0", str(self.sequence), event, 0)
            await self.runner.handle(Batch("shard-0", [delivered], 0))
        return encode_token("shard-0", str(self.sequence))

    def next_ts(self) -> int:
        self.ts += 1000
        return self.ts


def register(user_id: str, ts: int) -> UserRegistered:
    data = UserRegisteredData(user_id, user_id, user_id.title())
    return UserRegistered(id=f"reg-{user_id}", ts=ts, data=data)


def follow(a: str, b: str, ts: int) -> UserFollowed:
    return UserFollowed(id=f"f-{a}-{b}-{ts}", ts=ts, data=FollowData(a, b))


def post(author: str, n: int, ts: int) -> PostCreated:
    data = PostCreatedData(f"{author}-{n}", author, f"post {n} of {author}")
    return PostCreated(id=f"p-{author}-{n}", ts=ts, data=data)


