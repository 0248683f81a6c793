"""The graph processor as `fanline process` runs it: a Consumer on its own leases, over a log.

A small world is written to an SQLite log; `run_graph` folds it into the embedded graph and
checkpoints in graph-leases.db (the runner's leases.db is not touched); a follow written while
it runs arrives too; stopping returns after releasing the leases. The graph then equals a
brute-force computation over the world's events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from fanline.graph import run_graph
from fanline.settings import Settings, SettingsError
from fanline.wiring import open_graph
from load.world import WorldSpec, user_id, world_events, write_world
from projections.graph_gremlin import GremlinGraph
from streams.events import FollowData, UserFollowed, UserUnfollowed, encode, partition_key
from streams.leases import SHARD_END, TRIM_HORIZON
from streams.sqlite_leases import SQLiteLeaseStore
from streams.sqlite_log import SQLiteLog
from tests.graph.test_graph_projection import brute_suggestions

SPEC = WorldSpec(users=30, posts_per_user=1, popular=2, popular_share=0.5, follows_per_user=4, seed=11)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "the graph processor did not catch up"
        await asyncio.sleep(0.1)


async def test_run_graph_folds_the_log_on_leases_of_its_own(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, graph="embedded", shards=2)
    log = SQLiteLog(tmp_path / "log.db", shard_count=2)
    await write_world(log, SPEC)
    extra = UserFollowed(id="late", ts=1, data=FollowData(user_id(1), user_id(2)))
    undo = UserUnfollowed(id="undo", ts=2, data=FollowData(user_id(1), user_id(2)))
    stops: list[Callable[[], None]] = []
    task = asyncio.create_task(run_graph(settings, log, "worker-1", stops.append))
    reader = GremlinGraph.embedded(tmp_path / "graph.db")
    try:
        appended = await log.append([(partition_key(e), encode(e)) for e in (extra, undo, extra)])
        last = appended[-1]

        async def caught_up() -> bool:
            applied = await reader.applied()
            return applied.get(last.shard_id) == last.sequence and len(applied) == 2

        await wait_until(caught_up)
        for stop in stops:
            stop()
        await asyncio.wait_for(task, 30)
        leases = SQLiteLeaseStore(tmp_path / "graph-leases.db")
        held = await leases.list()
        await leases.close()
        assert {lease.owner for lease in held} == {None}  # released on stop
        assert all(lease.checkpoint not in (TRIM_HORIZON, SHARD_END) for lease in held)
        assert not (tmp_path / "leases.db").exists()  # the runner's checkpoints are elsewhere

        follows: dict[str, set[str]] = {}
        for event in [*world_events(SPEC), extra]:
            if isinstance(event, UserFollowed):
                follows.setdefault(event.data.follower_id, set()).add(event.data.followee_id)
        for i in range(SPEC.users):
            u = user_id(i)
            follows.setdefault(u, set())
            assert await reader.following_ids(u) == sorted(follows[u]), u
            assert await reader.suggestions(u, 5) == brute_suggestions(follows, u, 5), u
        assert await reader.handles([user_id(0)]) == {user_id(0): "user_0000"}
    finally:
        for stop in stops:
            stop()
        await asyncio.wait_for(task, 30)
        await reader.close()
        await log.close()


async def test_run_graph_returns_at_once_when_the_graph_is_off(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.db", shard_count=1)
    await asyncio.wait_for(run_graph(Settings(data_dir=tmp_path), log, "w", lambda stop: None), 5)
    await log.close()
    assert not (tmp_path / "graph.db").exists()
    assert not (tmp_path / "graph-leases.db").exists()


def test_the_graph_settings() -> None:
    settings = Settings.load(environ={"FANLINE_GRAPH": "neptune", "FANLINE_NEPTUNE_HOST": "db.example",
                                      "FANLINE_NEPTUNE_IAM": "false"})
    assert (settings.graph, settings.neptune_host, settings.neptune_iam) == ("neptune", "db.example", False)
    assert Settings.load(environ={}).graph == "off"
    assert open_graph(Settings()) is None
    with pytest.raises(SettingsError, match=r"tinkergraph.*\$\.graph"):
        Settings.load(environ={"FANLINE_GRAPH": "tinkergraph"})
    with pytest.raises(SettingsError, match="FANLINE_NEPTUNE_HOST"):
        open_graph(Settings(graph="neptune"))
