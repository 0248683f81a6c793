"""GremlinGraph on the embedded graph (gremlite): the contract, and what only a file can show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from load.world import WorldSpec, user_id, world_events
from processors.graph_projection import GraphProjector
from projections.graph import GraphUnavailable, PutEdge
from projections.graph_gremlin import GremlinGraph
from streams.delivery import Batch, Delivered
from streams.events import UserFollowed, UserUnfollowed
from tests.graph.graph_contract import GraphContract, follows


class TestEmbeddedGraph(GraphContract):
    @pytest.fixture
    async def graph(self, tmp_path: Path) -> AsyncIterator[GremlinGraph]:
        graph = GremlinGraph.embedded(tmp_path / "graph.db")
        yield graph
        await graph.close()


async def test_a_batch_that_fails_part_way_leaves_nothing(tmp_path: Path) -> None:
    graph = GremlinGraph.embedded(tmp_path / "graph.db")
    await graph.apply(follows("a>b"), "s1", "1")
    with pytest.raises(TypeError, match="not a graph mutation"):
        await graph.apply([PutEdge("a", "c"), "bad"], "s1", "2")  # type: ignore[list-item]
    assert await graph.following_ids("a") == ["b"]
    assert await graph.applied() == {"s1": "1"}
    # The vertex the failed batch made was not remembered: the next batch makes it again.
    await graph.apply(follows("a>c"), "s1", "3")
    assert await graph.following_ids("a") == ["b", "c"]
    await graph.close()


async def test_the_graph_survives_a_reopen_and_a_second_reader(tmp_path: Path) -> None:
    path = tmp_path / "graph.db"
    writer = GremlinGraph.embedded(path)
    await writer.apply(follows("a>b", "b>c"), "s1", "1")
    reader = GremlinGraph.embedded(path)
    assert await reader.suggestions("a", 5) == [("c", 1)]
    await writer.apply(follows("b>d"), "s1", "2")  # a commit the reader sees at its next look
    assert await reader.suggestions("a", 5) == [("c", 1), ("d", 1)]
    await writer.close()
    await reader.close()
    again = GremlinGraph.embedded(path)
    assert await again.following_ids("b") == ["c", "d"]
    assert await again.applied() == {"s1": "2"}
    await again.close()


async def test_a_file_that_is_not_a_graph_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "graph.db"
    path.write_bytes(b"not a database at all, just some bytes " * 100)
    before = path.read_bytes()
    graph = GremlinGraph.embedded(path)
    with pytest.raises(GraphUnavailable, match=r"graph\.db"):
        await graph.following_ids("a")
    with pytest.raises(GraphUnavailable):
        await graph.apply(follows("a>b"), "s1", "1")
    await graph.close()
    assert path.read_bytes() == before


async def test_the_sql_shortcuts_answer_what_the_gremlin_traversals_answer(tmp_path: Path) -> None:
    """The embedded graph reads suggestions and mutuals, and checks for an edge before adding it,
    in SQL over gremlite's quads; the Gremlin traversals alone (what Neptune runs) must fold the
    same world into the same graph and answer the same, on an empty graph and on the world."""
    by_sql = GremlinGraph.embedded(tmp_path / "graph.db")
    by_gremlin = GremlinGraph.embedded(tmp_path / "gremlin.db", sql=False)
    try:
        assert await by_sql.suggestions(user_id(1), 10) == [] == await by_gremlin.suggestions(user_id(1), 10)
        assert await by_sql.mutuals(user_id(1), user_id(2)) == []
        spec = WorldSpec(users=60, posts_per_user=0, popular=4, popular_share=0.4, follows_per_user=8, seed=2)
        events = list(world_events(spec))
        follows = [e for e in events if isinstance(e, UserFollowed)]
        events += [UserUnfollowed(id=f"un-{n}", ts=e.ts, data=e.data) for n, e in enumerate(follows[::5])]
        events += follows[:20]  # again: already there
        batch = Batch("s", [Delivered("s", str(n + 1), e, 0) for n, e in enumerate(events)], 0)
        for graph in (by_sql, by_gremlin):
            await GraphProjector(graph).handle(batch)
        assert await by_sql.follow_lists() == await by_gremlin.follow_lists()
        users = [user_id(n) for n in range(spec.users)] + ["nobody"]
        for user in users:
            for limit in (1, 5, 100):
                assert await by_sql.suggestions(user, limit) == await by_gremlin.suggestions(user, limit)
        assert any([await by_sql.suggestions(user, 5) for user in users])
        pairs = [*zip(users, users[1:] + users[:1], strict=True), (user_id(3), user_id(3))]
        for a, b in pairs:
            assert await by_sql.mutuals(a, b) == await by_gremlin.mutuals(a, b)
        assert any([await by_sql.mutuals(a, b) for a, b in pairs])
        for user in users:
            assert await by_sql.following_ids(user) == await by_gremlin.following_ids(user)
    finally:
        await by_sql.close()
        await by_gremlin.close()
