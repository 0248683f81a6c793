"""Random small worlds: the embedded graph's suggestions and mutuals equal a brute-force
computation over the follower projection (the Runner's, in a MemoryStore), after follows,
unfollows, redeliveries, crashes part-way, and a replay (into the same graph and a fresh one).

The histories are the processors' (tests/processors/histories.py): a dozen users, follows
leaning on a few, registrations after follows, self-follows, unfollows of absent edges,
duplicated events; ids namespaced per example so one graph file serves many examples.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processors.graph_projection import GraphProjector, graph_mutations
from projections.graph import DeleteEdge, GraphStore, PutEdge, UpsertUser
from projections.graph_gremlin import GremlinGraph
from projections.memory_store import MemoryStore
from projections.store import Store
from streams.delivery import Batch, Delivered, Undecodable
from streams.events import (
    Event,
    FollowData,
    PostCreated,
    PostCreatedData,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
    UserUnfollowed,
    partition_key,
)
from streams.log import hash_key
from tests.processors import histories

SHARDS = 3
_namespaces = itertools.count()


class Crash(Exception):
    pass


class CrashingGraph:
    """A GraphStore whose next apply fails before, after, or after a prefix of the mutations."""

    def __init__(self, inner: GraphStore) -> None:
        self.inner = inner
        self.plan: str | int | None = None

    async def apply(self, mutations: Sequence[Any], shard_id: str, sequence: str) -> None:
        plan, self.plan = self.plan, None
        if plan == "before":
            raise Crash("before apply")
        if isinstance(plan, int):
            mark = (await self.inner.applied()).get(shard_id, "0")
            await self.inner.apply(mutations[: plan % (len(mutations) + 1)], shard_id, mark)
            raise Crash("part-way through")
        await self.inner.apply(mutations, shard_id, sequence)
        if plan == "after":
            raise Crash("after apply, before the checkpoint")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def shard_records(ns: str, events: Sequence[Event], rng: random.Random) -> dict[str, list[Any]]:
    """The stream as the consumer would see it: per shard, in order, a few undecodable records."""
    shards: dict[str, list[Any]] = {}
    for event in events:
        shard = f"{ns}s{hash_key(partition_key(event)) % SHARDS}"
        records = shards.setdefault(shard, [])
        if rng.random() < 0.05:
            records.append(Undecodable(shard, str(10 + 3 * len(records)), b"{", "malformed"))
        records.append(Delivered(shard, str(10 + 3 * len(records)), event, 0))
    return shards


async def deliver(graph: GraphStore, shards: dict[str, list[Any]], rng: random.Random,
                  crash_rate: float) -> None:
    """At-least-once, in order per shard, batches of random length, crashes at random."""
    crashing = CrashingGraph(graph)
    projector = GraphProjector(crashing)  # type: ignore[arg-type]
    checkpoints = dict.fromkeys(shards, 0)
    while any(checkpoints[s] < len(records) for s, records in shards.items()):
        shard = rng.choice(sorted(s for s in shards if checkpoints[s] < len(shards[s])))
        start = checkpoints[shard]
        items = shards[shard][start : start + rng.randint(1, 6)]
        if rng.random() < crash_rate:
            crashing.plan = rng.choice(["before", "after", rng.randint(0, 100)])
        try:
            await projector.handle(Batch(shard, items, millis_behind=0))
        except Crash:
            continue
        checkpoints[shard] = start + len(items)


# --- the brute force over the follower projection ---------------------------------------------
async def following(store: Store, user_ids: Sequence[str]) -> dict[str, set[str]]:
    return {u: set(await store.following_ids(u)) for u in user_ids}


def brute_suggestions(follows: dict[str, set[str]], me: str, limit: int) -> list[tuple[str, int]]:
    score: Counter[str] = Counter()
    for followee in follows.get(me, set()):
        for candidate in follows.get(followee, set()):
            if candidate != me and candidate not in follows[me]:
                score[candidate] += 1
    best = sorted(score, key=lambda c: (-score[c], c))
    return [(c, score[c]) for c in best[:limit]]


async def assert_graph_equals_brute_force(
    graph: GraphStore, follows: dict[str, set[str]], ns: str
) -> None:
    users = sorted(follows)
    for u in users:
        assert await graph.following_ids(u) == sorted(follows[u]), u
        for limit in (1, 3, 50):
            assert await graph.suggestions(u, limit) == brute_suggestions(follows, u, limit), (u, limit)
    for a, b in itertools.product(users, users):
        assert await graph.mutuals(a, b) == sorted(follows[a] & follows[b]), (a, b)


@pytest.fixture(scope="module")
async def graphs(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[GremlinGraph, GremlinGraph]]:
    base = Path(tmp_path_factory.mktemp("graph"))
    live, rebuilt = GremlinGraph.embedded(base / "live.db"), GremlinGraph.embedded(base / "rebuilt.db")
    yield live, rebuilt
    await live.close()
    await rebuilt.close()


# Always run: a follow before either user registers, then unfollowed and followed again; a
# crowd around u0 whose members follow each other (ties and two-hop paths).
_REVIVED = [("follow", 3, 4), ("register", 3, False), ("unfollow", 3, 4), ("follow", 3, 4),
            ("follow", 4, 5), ("register", 4, True), ("dup", 1)]
_CROWD = [("crowd", 0, 10), ("crowd", 1, 3), ("follow", 0, 1), ("follow", 2, 0), ("uncrowd", 0, 2),
          ("follow", 5, 2), ("undo", 3)]


@given(ops=histories.operations, seed=st.integers(0, 2**32))
@example(ops=_REVIVED, seed=1)
@example(ops=_CROWD, seed=2)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
async def test_graph_answers_equal_brute_force_over_the_follower_projection(
    graphs: tuple[GremlinGraph, GremlinGraph], ops: list[tuple[Any, ...]], seed: int
) -> None:
    live, rebuilt = graphs
    ns = f"g{next(_namespaces)}"
    rng = random.Random(seed)
    events = histories.build_history(ns, ops)
    store = MemoryStore()
    await histories.deliver(store, histories.settings_for("hybrid", 10), ns, events, rng)
    follows = await following(store, [f"{ns}u{i}" for i in range(histories.USERS)])
    shards = shard_records(ns, events, rng)

    await deliver(live, shards, rng, crash_rate=0.3)
    await assert_graph_equals_brute_force(live, follows, ns)
    last = {s: records[-1].sequence for s, records in shards.items()}
    assert {s: q for s, q in (await live.applied()).items() if s.startswith(f"{ns}s")} == last

    # Replay: the whole stream again over the same graph, and into a fresh one.
    await deliver(live, shards, rng, crash_rate=0.3)
    await assert_graph_equals_brute_force(live, follows, ns)
    await deliver(rebuilt, shards, rng, crash_rate=0.0)
    await assert_graph_equals_brute_force(rebuilt, follows, ns)


def test_graph_mutations_of_each_event() -> None:
    reg = UserRegistered(id="e1", ts=1, data=UserRegisteredData("u1", "ann", "Ann"))
    fol = UserFollowed(id="e2", ts=1, data=FollowData("u1", "u2"))
    unf = UserUnfollowed(id="e3", ts=1, data=FollowData("u1", "u2"))
    own = UserFollowed(id="e4", ts=1, data=FollowData("u1", "u1"))
    post = PostCreated(id="e5", ts=1, data=PostCreatedData("p1", "u1", "hello"))
    assert graph_mutations(reg) == [UpsertUser("u1", "ann")]
    assert graph_mutations(fol) == [PutEdge("u1", "u2")]
    assert graph_mutations(unf) == [DeleteEdge("u1", "u2")]
    assert graph_mutations(own) == []
    assert graph_mutations(post) == []
