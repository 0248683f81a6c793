"""Random histories and an at-least-once delivery of them through the Runner, with crashes.

A history is a list of valid events among a dozen users (ids namespaced per example, so one
store serves many examples): registrations (and re-registrations), follows (self-follows
included), unfollows, posts and deletes, with ts that tie now and then, and earlier events
appended again (a producer's retry: the same event at a later place in the log). Follows lean towards
u0 and u1 so that they cross the celebrity threshold and fall back through the 90 % band.

Limits (see reference_model): at most MAX_POSTS posts in a history, and the settings give
timeline_cap and backfill_depth of MAX_POSTS, so no timeline is trimmed and every backfill
carries all of an author's posts.

The delivery is a consumer in miniature: per shard a checkpoint; a batch is the next few
records from it; after the handler returns the checkpoint moves. Between batches, at random:
- crash before apply: the store refuses, the runner restarts, the batch comes again;
- crash after apply, before the checkpoint: the batch (or a longer one) comes again;
- partial apply: part of the batch's mutations land without the applied mark, then a crash
  (`landed`: any part of the run of writes under way, as DynamoDBStore's parallel writes);
- an undecodable record in the shard, which must end up dead-lettered.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from processors.metrics import Metrics
from processors.runner import Runner
from processors.settings import FoldSettings
from projections.records import Mutation, TrimTimelines
from projections.store import Store
from projections.timeline import Strategy, TimelineItem, TimelineReader
from streams.delivery import Batch, Delivered, Undecodable
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
    partition_key,
)
from streams.log import hash_key

USERS = 12
MAX_POSTS = 14
SHARDS = 2


def settings_for(strategy: Strategy, threshold: int) -> FoldSettings:
    return FoldSettings(strategy, threshold, timeline_cap=MAX_POSTS, backfill_depth=MAX_POSTS)


# Followees and authors lean towards u0..u2, so the same few users gain followers, post, and
# cross the celebrity threshold both ways; "crowd" brings n followers at once, "uncrowd" takes
# them away again (the way past a threshold of 10 within a short history).
_any = st.integers(0, USERS - 1)
_busy = st.one_of(st.integers(0, 2), _any)
_op = st.one_of(
    st.tuples(st.just("register"), _busy, st.booleans()),
    st.tuples(st.just("follow"), _any, _busy),
    # Sizes that step over the thresholds 3 and 10 and into and through their 90 % bands.
    st.tuples(st.just("crowd"), _busy, st.sampled_from([1, 3, 10, 11])),
    st.tuples(st.just("uncrowd"), _busy, st.sampled_from([1, 2, 3, 9])),
    st.tuples(st.just("unfollow"), _any, _busy),
    st.tuples(st.just("undo"), st.integers(0, 100)),  # unfollow an edge made earlier
    st.tuples(st.just("post"), _busy, st.integers(0, 2)),
    st.tuples(st.just("post"), _busy, st.integers(0, 2)),
    st.tuples(st.just("delete"), st.integers(0, 100)),
    st.tuples(st.just("dup"), st.integers(0, 100)),  # an earlier event again (a producer retry)
)
operations = st.lists(_op, min_size=5, max_size=40)
thresholds = st.sampled_from([3, 10])


def build_history(ns: str, ops: Sequence[tuple[Any, ...]]) -> list[Event]:
    """Turn drawn operations into valid events; ids are prefixed by `ns`."""
    events: list[Event] = []
    posts: list[tuple[str, str]] = []  # (post id, author id), in creation order
    follows: list[FollowData] = []
    ts = 1_000
    for n, op in enumerate(ops):
        kind = op[0]
        eid = f"{ns}e{n}"
        if kind == "register":
            uid = f"{ns}u{op[1]}"
            handle = f"user_{op[1]}" + ("_b" if op[2] else "")
            events.append(UserRegistered(id=eid, ts=ts, data=UserRegisteredData(uid, handle, handle.upper())))
        elif kind in ("follow", "unfollow"):
            data = FollowData(f"{ns}u{op[1]}", f"{ns}u{op[2]}")
            cls = UserFollowed if kind == "follow" else UserUnfollowed
            events.append(cls(id=eid, ts=ts, data=data))
            follows.append(data)
        elif kind in ("crowd", "uncrowd"):
            cls = UserFollowed if kind == "crowd" else UserUnfollowed
            for k in range(op[2]):
                data = FollowData(f"{ns}u{(op[1] + 1 + k) % USERS}", f"{ns}u{op[1]}")
                events.append(cls(id=f"{eid}.{k}", ts=ts, data=data))
        elif kind == "undo" and follows:
            events.append(UserUnfollowed(id=eid, ts=ts, data=follows[op[1] % len(follows)]))
        elif kind == "post" and len(posts) < MAX_POSTS:
            ts += op[2]  # 0: a tie with the previous event, ordered by post id
            pid, author = f"{ns}p{len(posts):02d}", f"{ns}u{op[1]}"
            posts.append((pid, author))
            events.append(PostCreated(id=eid, ts=ts, data=PostCreatedData(pid, author, f"body {pid}")))
        elif kind == "dup" and events:
            events.append(events[op[1] % len(events)])
        elif kind == "delete" and posts:
            pid, author = posts[op[1] % len(posts)]  # may be deleted already: a no-op then
            events.append(PostDeleted(id=eid, ts=ts, data=PostDeletedData(pid, author)))
        ts += 1
    return events


class Crash(Exception):
    pass


def landed(mutations: Sequence[Mutation], seed: int) -> list[Mutation]:
    """What a crash part-way through an apply leaves, the way DynamoDBStore writes: runs of
    writes in parallel, each finished before a trim (which must read) starts. So: everything
    up to the last trim before the crash point, and any part of the run it was in."""
    rng = random.Random(seed)
    cut = rng.randint(0, len(mutations))
    trims = [i for i, m in enumerate(mutations[:cut]) if isinstance(m, TrimTimelines)]
    done = trims[-1] + 1 if trims else 0
    return [*mutations[:done], *(m for m in mutations[done:cut] if rng.random() < 0.5)]


class CrashingStore:
    """A Store whose next apply can be made to fail before, after, or half-way through."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.plan: str | int | None = None  # "before" | "after" | a prefix length

    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        plan, self.plan = self.plan, None
        if plan == "before":
            raise Crash("before apply")
        if isinstance(plan, int):
            mark = (await self.inner.applied()).get(shard_id, "0")
            await self.inner.apply(landed(mutations, plan), shard_id, mark)
            raise Crash("part-way through apply")
        await self.inner.apply(mutations, shard_id, sequence)
        if plan == "after":
            raise Crash("after apply, before the checkpoint")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Delivery:
    dead_lettered: set[tuple[str, str]]  # (shard, sequence) of the undecodable records
    crashes: int


async def deliver(
    store: Store, settings: FoldSettings, ns: str, events: Sequence[Event], rng: random.Random,
    *, crash_rate: float = 0.25,
) -> Delivery:
    shards: dict[str, list[Delivered | Undecodable]] = {}
    undecodable: set[tuple[str, str]] = set()
    for event in events:
        # The shard from the id without its namespace, so a replayed example runs the same way.
        shard = f"{ns}s{hash_key(partition_key(event).removeprefix(ns)) % SHARDS}"
        records = shards.setdefault(shard, [])
        # Sequence numbers grow by uneven steps and in length (compared as numbers).
        sequence = str(9 + len(records) * 7)
        if rng.random() < 0.05:
            undecodable.add((shard, sequence))
            records.append(Undecodable(shard, sequence, b"{not json", "malformed"))
            sequence = str(9 + len(records) * 7)
        records.append(Delivered(shard, sequence, event, 0))
    crashing = CrashingStore(store)
    runner = Runner(crashing, settings, Metrics())  # type: ignore[arg-type]
    checkpoints = dict.fromkeys(shards, 0)
    crashes = 0
    while any(checkpoints[s] < len(records) for s, records in shards.items()):
        shard = rng.choice(sorted(s for s in shards if checkpoints[s] < len(shards[s])))
        start = checkpoints[shard]
        items = shards[shard][start : start + rng.randint(1, 6)]
        roll = rng.random()
        if roll < crash_rate:
            crashing.plan = rng.choice(["before", "after", rng.randint(0, 2**32)])
        try:
            await runner.handle(Batch(shard, items, millis_behind=0))
        except Crash:
            crashes += 1
            runner = Runner(crashing, settings, Metrics())  # type: ignore[arg-type]
            continue
        checkpoints[shard] = start + len(items)
    return Delivery(undecodable, crashes)


async def read_all(pages: Any, limit: int) -> list[TimelineItem]:
    """Page through with cursors until the end; `pages(limit, cursor)` gives a TimelinePage."""
    items: list[TimelineItem] = []
    cursor = None
    for _ in range(1000):
        page = await pages(limit, cursor)
        assert len(page.items) <= limit
        items += page.items
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("paging never ended")


async def timeline(reader: TimelineReader, user_id: str, limit: int) -> list[TimelineItem]:
    return await read_all(lambda n, c: reader.page(user_id, n, c), limit)


async def posts(reader: TimelineReader, user_id: str, limit: int) -> list[TimelineItem]:
    return await read_all(lambda n, c: reader.posts_page(user_id, n, c), limit)
