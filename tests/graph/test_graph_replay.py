"""The graph in `fanline replay` (FANLINE_GRAPH=embedded): a history processed live, then replayed,
gives an identical graph in the new version (graph-r1.db); the graph processor and the read API
move to it with the store's pointer; `--verify` compares the graph and says when it differs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from api.auth import Tokens
from fanline import versions
from fanline.commands.replay import drop_old_versions, replay, verify
from fanline.graph import active_graph, open_following_graph, rebuild_graph
from fanline.processing import open_following_store
from fanline.settings import Settings
from fanline.wiring import open_accounts, open_graph, open_log
from load.world import user_id
from projections.graph import GraphMutation, GraphStore, PutEdge
from projections.graph_gremlin import GremlinGraph
from streams.events import FollowData, UserFollowed
from streams.log import Log, Position
from streams.sqlite_log import SQLiteLog
from tests.replay_helpers import THRESHOLD, Processors, append, caught_up, history, wait_for

USERS = 60
SECRET = "x" * 32


def settings_for(tmp_path: Path) -> Settings:
    return Settings.load({"data_dir": tmp_path, "celebrity_threshold": THRESHOLD, "graph": "embedded"},
                         environ={})


async def graph_caught_up(settings: Settings, log: Log) -> bool:
    """Whether the active version's graph has applied every record of the stream."""
    graph = await active_graph(settings)
    assert graph is not None
    try:
        applied = await graph.applied()
    finally:
        await graph.close()
    for shard in await log.shards():
        last = applied.get(shard.shard_id)
        reader = log.reader(shard.shard_id, Position.after(last) if last else Position.trim_horizon())
        if (await reader.read(10)).records:
            return False
    return True


async def processed_live(settings: Settings, log: Log) -> int:
    """The history through `fanline process` (runner and graph processor), stopped after."""
    processors = Processors(settings, log)
    try:
        events = history(USERS)
        await append(log, events)
        await wait_for(lambda: caught_up(settings, log), 40)
        await wait_for(lambda: graph_caught_up(settings, log), 40)
        return len(events)
    finally:
        await processors.stop()


def follow(follower: str, followee: str) -> UserFollowed:
    return UserFollowed(id=f"f-{follower}-{followee}", ts=1, data=FollowData(follower, followee))


async def following(settings: Settings, version: str, user: str) -> list[str]:
    graph = open_graph(settings, version)
    assert graph is not None
    try:
        return await graph.following_ids(user)
    finally:
        await graph.close()


async def test_live_then_replayed_graph_is_identical_and_the_processor_moves_on(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = await open_log(settings)
    events = await processed_live(settings, log)
    first = await verify(settings)
    assert first["graph_identical"] is True and first["identical"] is True, first
    assert first["graph_users"] == USERS

    switched = await replay(settings)
    assert switched["version"] == "r1" and switched["graph_events"] == events and switched["graph_cpu_s"] > 0
    assert (tmp_path / "graph-r1.db").exists() and (tmp_path / "graph-leases-r1.db").exists()
    # On r1 now: a follow that arrives after the switch reaches r1's graph (its seeded leases).
    processors = Processors(settings, log)
    try:
        await append(log, [follow(user_id(2), "newcomer")])
        await wait_for(lambda: graph_caught_up(settings, log), 40)
    finally:
        await processors.stop()
    assert "newcomer" in await following(settings, "r1", user_id(2))
    again = await verify(settings)
    assert again["graph_identical"] is True and again["identical"] is True, again
    assert not (tmp_path / "graph-verify.db").exists()  # the scratch graph is dropped

    assert await drop_old_versions(settings) == ([""], [])
    assert not (tmp_path / "graph.db").exists() and not (tmp_path / "graph-leases.db").exists()
    assert (tmp_path / "graph-r1.db").exists()
    await log.close()


async def test_verify_says_a_tampered_graph_is_not_identical(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = await open_log(settings)
    await processed_live(settings, log)
    await log.close()
    graph = open_graph(settings)
    assert graph is not None
    shard, mark = next(iter((await graph.applied()).items()))
    await graph.apply([PutEdge(user_id(3), user_id(40))], shard, mark)  # a projection bug
    await graph.close()
    figures = await verify(settings)
    assert figures["graph_identical"] is False and figures["graph_differences"] == 1
    assert figures["identical"] is False and figures["differences"] == 0  # the store is fine


async def test_the_api_reads_the_new_versions_graph_after_the_switch(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = await open_log(settings)
    await processed_live(settings, log)
    # Written while no processor runs: only the replay folds them (into r1, not the live graph).
    await append(log, [follow(user_id(7), "common"), follow(user_id(8), "common")])
    store, graph = await open_following_store(settings), await open_following_graph(settings)
    accounts = await open_accounts(settings)
    app = create_app(log, store, accounts, secret=SECRET, strategy="hybrid", graph=graph)
    token = Tokens(SECRET).issue("test", "producer")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        mutuals = f"/v1/users/{user_id(7)}/mutuals/{user_id(8)}"
        before = (await client.get(mutuals)).json()["items"]
        assert "common" not in before
        await replay(settings)
        await asyncio.sleep(1.1)  # the API looks at the pointer at most once a second
        after = (await client.get(mutuals)).json()["items"]
    assert after == sorted([*before, "common"])
    assert (await versions.active_version(settings)) == "r1"
    assert "common" not in await following(settings, "", user_id(7))
    for closing in (store, graph, accounts, log):
        assert closing is not None
        await closing.close()


class CountingGraph:
    """Counts the mutations applied through it (the rest is the inner graph's)."""

    def __init__(self, inner: GraphStore) -> None:
        self.inner = inner
        self.mutations = 0

    async def apply(self, mutations: Sequence[GraphMutation], shard_id: str, sequence: str) -> None:
        self.mutations += len(mutations)
        await self.inner.apply(mutations, shard_id, sequence)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_rebuild_killed_part_way_continues_after_its_last_batch(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.db", shard_count=2)
    await append(log, history(USERS))
    halfway = {}
    for shard in await log.shards():
        records = (await log.reader(shard.shard_id, Position.trim_horizon()).read(10_000)).records
        halfway[shard.shard_id] = records[len(records) // 2].sequence
    resumed = CountingGraph(GremlinGraph.embedded(tmp_path / "resumed.db"))
    whole = CountingGraph(GremlinGraph.embedded(tmp_path / "whole.db"))
    try:
        first = await rebuild_graph(log, None, resumed, until=halfway, batch=50)  # then "killed"
        first_mutations = resumed.mutations
        await rebuild_graph(log, None, resumed, batch=50)
        await rebuild_graph(log, None, whole, batch=50)
        assert first.events > 0 and 0 < first_mutations < whole.mutations
        assert resumed.mutations == whole.mutations  # the second run skipped what the first applied
        assert await resumed.follow_lists() == await whole.follow_lists()
        assert await resumed.applied() == await whole.applied()
    finally:
        await resumed.inner.close()
        await whole.inner.close()
        await log.close()
