"""`fanline graph verify`: the log replayed into a scratch graph equals the graph, or it says where not."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from fanline.cli import main
from load.world import WorldSpec, user_id, world_events, write_world
from processors.graph_projection import GraphProjector
from projections.graph import PutEdge
from projections.graph_gremlin import GremlinGraph
from streams.consumer import to_batch
from streams.events import UserFollowed, UserUnfollowed, encode, partition_key
from streams.log import Position
from streams.sqlite_log import SQLiteLog

SPEC = WorldSpec(users=25, posts_per_user=1, popular=2, popular_share=0.5, follows_per_user=3, seed=5)
ENV = {"FANLINE_GRAPH": "embedded"}


async def _build(data_dir: Path) -> int:
    """The world and some unfollows in the log, folded into data_dir/graph.db in batches of 50."""
    log = SQLiteLog(data_dir / "log.db", shard_count=4)
    graph = GremlinGraph.embedded(data_dir / "graph.db")
    try:
        count = await write_world(log, SPEC)
        undo = [UserUnfollowed(id=f"u{n}", ts=1, data=e.data)
                for n, e in enumerate(world_events(SPEC)) if isinstance(e, UserFollowed) and n % 4 == 0]
        await log.append([(partition_key(e), encode(e)) for e in undo])
        projector = GraphProjector(graph)
        for shard in await log.shards():
            reader = log.reader(shard.shard_id, Position.trim_horizon())
            while (result := await reader.read(50)).records:
                await projector.handle(to_batch(shard.shard_id, result))
        return count + len(undo)
    finally:
        await graph.close()
        await log.close()


async def _tamper(data_dir: Path) -> None:
    graph = GremlinGraph.embedded(data_dir / "graph.db")
    shard, mark = next(iter((await graph.applied()).items()))
    await graph.apply([PutEdge(user_id(3), user_id(4)), PutEdge(user_id(3), user_id(5))], shard, mark)
    await graph.close()


def test_verify_says_identical_then_names_a_difference(tmp_path: Path) -> None:
    events = asyncio.run(_build(tmp_path))
    runner = CliRunner()
    result = runner.invoke(main, ["graph", "verify", "--data-dir", str(tmp_path)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "identical: true" in result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["events"] == events and figures["identical"] is True
    assert figures["users"] == SPEC.users

    asyncio.run(_tamper(tmp_path))
    result = runner.invoke(main, ["graph", "verify", "--data-dir", str(tmp_path)], env=ENV)
    assert result.exit_code == 1
    assert f"differs: {user_id(3)}: follows" in result.output
    assert json.loads(result.output.strip().splitlines()[-1])["identical"] is False


def test_verify_refuses_a_log_without_the_history_and_a_graph_that_is_off(tmp_path: Path) -> None:
    async def mark_beyond_the_log() -> None:
        log = SQLiteLog(tmp_path / "log.db", shard_count=1)
        graph = GremlinGraph.embedded(tmp_path / "graph.db")
        shard = (await log.shards())[0].shard_id
        await graph.apply([], shard, "999999")
        await graph.close()
        await log.close()

    asyncio.run(mark_beyond_the_log())
    runner = CliRunner()
    result = runner.invoke(main, ["graph", "verify", "--data-dir", str(tmp_path)], env=ENV)
    assert result.exit_code == 1
    assert "no longer holds the whole history" in result.output
    off = {"FANLINE_GRAPH": "off"}
    result = runner.invoke(main, ["graph", "verify", "--data-dir", str(tmp_path)], env=off)
    assert result.exit_code == 2
    assert "FANLINE_GRAPH" in result.output
