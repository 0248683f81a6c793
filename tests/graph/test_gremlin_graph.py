"""GremlinGraph on the embedded graph (gremlite): the contract, and what only a file can show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from projections.graph import GraphUnavailable, PutEdge
from projections.graph_gremlin import GremlinGraph
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
