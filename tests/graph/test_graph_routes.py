"""The read routes backed by the graph answer exactly what the Store-backed routes answer.

A small world (load.world) is folded by the Runner into a MemoryStore and by the graph
processor into an embedded graph; two apps, one with the graph and one without, are asked
for every user's suggestions (several limits) and for mutuals of many pairs.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from api.app import create_app
from load.world import WorldSpec, user_id, world_events
from processors.graph_projection import GraphProjector
from processors.runner import Runner
from processors.settings import FoldSettings
from projections.graph import GraphStore
from projections.graph_gremlin import GremlinGraph
from projections.memory_store import MemoryStore
from projections.sqlite_accounts import SQLiteAccounts
from streams.delivery import Batch, Delivered
from streams.events import UserFollowed, UserUnfollowed, partition_key
from streams.log import hash_key
from streams.sqlite_log import SQLiteLog

SECRET = "test-secret-of-enough-length-for-hs256"
USERS = 40
SPEC = WorldSpec(users=USERS, posts_per_user=1, popular=3, popular_share=0.5, follows_per_user=5, seed=3)


async def fold_world(store: MemoryStore, graph: GraphStore) -> None:
    """The world, then some unfollows, by shard in batches of 7, into both projections."""
    events = list(world_events(SPEC))
    rng = random.Random(5)
    follows = [e for e in events if isinstance(e, UserFollowed)]
    events += [UserUnfollowed(id=f"un-{n}", ts=e.ts, data=e.data)
               for n, e in enumerate(rng.sample(follows, 30))]
    shards: dict[str, list[Delivered]] = {}
    for event in events:
        shard = f"s{hash_key(partition_key(event)) % 3}"
        shards.setdefault(shard, []).append(Delivered(shard, str(len(shards.get(shard, [])) + 1), event, 0))
    runner, projector = Runner(store, FoldSettings(celebrity_threshold=10)), GraphProjector(graph)
    for shard, items in shards.items():
        for start in range(0, len(items), 7):
            batch = Batch(shard, items[start : start + 7], millis_behind=0)
            await runner.handle(batch)
            await projector.handle(batch)


@dataclass
class Apps:
    with_graph: httpx.AsyncClient
    without: httpx.AsyncClient


@pytest.fixture
async def apps(tmp_path: Path) -> AsyncIterator[Apps]:
    store, graph = MemoryStore(), GremlinGraph.embedded(tmp_path / "graph.db")
    await fold_world(store, graph)
    log = SQLiteLog(tmp_path / "log.db", shard_count=2)
    accounts = SQLiteAccounts(tmp_path / "accounts.db")
    hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(
            log, store, accounts, secret=SECRET, hasher=hasher, graph=g)), base_url="http://t")
        for g in (graph, None)
    ]
    yield Apps(*clients)
    for client in clients:
        await client.aclose()
    await graph.close()
    await accounts.close()
    await log.close()


async def test_suggestions_and_mutuals_from_the_graph_equal_the_store_answers(apps: Apps) -> None:
    nonempty = 0
    for i in range(USERS):
        for limit in (1, 10, 200):
            path = f"/v1/users/{user_id(i)}/suggestions?limit={limit}"
            got, want = await apps.with_graph.get(path), await apps.without.get(path)
            assert got.status_code == want.status_code == 200
            assert got.json() == want.json(), path
            nonempty += bool(got.json()["items"])
    assert nonempty > USERS  # the world has two-hop paths: the comparison is not of empty lists
    rng = random.Random(1)
    common = 0
    for _ in range(150):
        a, b = user_id(rng.randrange(USERS)), user_id(rng.randrange(USERS))
        path = f"/v1/users/{a}/mutuals/{b}"
        got, want = await apps.with_graph.get(path), await apps.without.get(path)
        assert got.status_code == want.status_code == 200
        assert got.json() == want.json(), path
        common += bool(got.json()["items"])
    assert common > 0


async def test_unknown_users_and_bad_limits_answer_as_before(apps: Apps) -> None:
    for path in ("/v1/users/nobody/suggestions", f"/v1/users/{user_id(0)}/mutuals/nobody",
                 f"/v1/users/{user_id(0)}/suggestions?limit=0", f"/v1/users/{user_id(0)}/suggestions?x=1"):
        got, want = await apps.with_graph.get(path), await apps.without.get(path)
        assert got.status_code == want.status_code and got.status_code in (400, 404), path
        assert got.json() == want.json()


async def test_a_graph_that_does_not_answer_is_503_with_retry_after(tmp_path: Path) -> None:
    (tmp_path / "graph.db").write_bytes(b"not a graph " * 100)
    graph = GremlinGraph.embedded(tmp_path / "graph.db")
    store, other = MemoryStore(), GremlinGraph.embedded(tmp_path / "other.db")
    await fold_world(store, other)
    await other.close()
    log, accounts = SQLiteLog(tmp_path / "log.db", shard_count=2), SQLiteAccounts(tmp_path / "accounts.db")
    app = create_app(log, store, accounts, secret=SECRET, graph=graph)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for path in (f"/v1/users/{user_id(0)}/suggestions", f"/v1/users/{user_id(0)}/mutuals/{user_id(1)}"):
            answer = await client.get(path)
            assert answer.status_code == 503
            assert answer.headers["Retry-After"] == "1"
            assert answer.json()["error"]["code"] == "graph_unavailable"
    await graph.close()
    await accounts.close()
    await log.close()
