"""The GraphStore contract: one abstract class of tests, subclassed once per adapter.

A subclass provides the fixture `graph` (a fresh, empty GraphStore per test).
"""

from __future__ import annotations

from projections.graph import DeleteEdge, GraphMutation, GraphStore, PutEdge, UpsertUser


def follows(*pairs: str) -> list[GraphMutation]:
    """follows("a>b", "a>c") -> the PutEdge mutations."""
    return [PutEdge(*pair.split(">")) for pair in pairs]


class GraphContract:
    async def test_an_empty_graph_answers_empty(self, graph: GraphStore) -> None:
        assert await graph.applied() == {}
        assert await graph.follow_lists() == {}
        assert await graph.following_ids("nobody") == []
        assert await graph.suggestions("nobody", 10) == []
        assert await graph.mutuals("nobody", "noone") == []
        assert await graph.handles(["nobody"]) == {}
        assert await graph.handles([]) == {}

    async def test_follows_are_upserts_and_unfollows_deletes(self, graph: GraphStore) -> None:
        await graph.apply(follows("a>b", "a>c", "a>b"), "s1", "10")
        await graph.apply(follows("a>b", "a>c"), "s1", "10")  # the batch again
        assert await graph.following_ids("a") == ["b", "c"]
        await graph.apply([DeleteEdge("a", "b"), DeleteEdge("a", "b"), DeleteEdge("x", "y")], "s1", "11")
        assert await graph.following_ids("a") == ["c"]
        assert await graph.following_ids("b") == []
        await graph.apply([PutEdge("a", "b"), DeleteEdge("a", "b"), PutEdge("a", "b")], "s1", "12")
        assert await graph.following_ids("a") == ["b", "c"]

    async def test_a_follow_before_the_registration_keeps_both(self, graph: GraphStore) -> None:
        await graph.apply(follows("a>b"), "s1", "1")
        assert await graph.handles(["a", "b"]) == {}
        await graph.apply([UpsertUser("a", "alice"), UpsertUser("b", "bob")], "s2", "5")
        await graph.apply([UpsertUser("a", "alice_2")], "s2", "6")  # a re-registration
        assert await graph.handles(["a", "b", "c"]) == {"a": "alice_2", "b": "bob"}
        assert await graph.following_ids("a") == ["b"]

    async def test_follow_lists_are_the_whole_graph(self, graph: GraphStore) -> None:
        await graph.apply(
            [*follows("a>b", "a>c", "c>a"), UpsertUser("d", "dee"), DeleteEdge("a", "c")], "s1", "1"
        )
        assert await graph.follow_lists() == {"a": ["b"], "b": [], "c": ["a"], "d": []}

    async def test_the_applied_mark_is_per_shard_and_the_last_one(self, graph: GraphStore) -> None:
        await graph.apply([], "s1", "7")
        await graph.apply(follows("a>b"), "s2", "3")
        await graph.apply([], "s1", "123456789012345678901234567890")
        assert await graph.applied() == {"s1": "123456789012345678901234567890", "s2": "3"}

    async def test_suggestions_rank_by_followees_who_follow(self, graph: GraphStore) -> None:
        await graph.apply(
            follows("me>a", "me>b", "me>c", "a>x", "b>x", "c>x", "a>y", "b>y", "a>z", "a>b", "c>me",
                    "z>w"),
            "s1", "1",
        )
        # x by 3, y by 2, z by 1; b is followed already and "me" is the user.
        assert await graph.suggestions("me", 10) == [("x", 3), ("y", 2), ("z", 1)]
        assert await graph.suggestions("me", 2) == [("x", 3), ("y", 2)]
        assert await graph.suggestions("a", 10) == [("w", 1)]
        assert await graph.suggestions("c", 10) == [("a", 1), ("b", 1)]  # ties by id; not c itself
        assert await graph.suggestions("w", 10) == []

    async def test_mutuals_are_the_common_followees(self, graph: GraphStore) -> None:
        await graph.apply(follows("a>x", "a>y", "a>b", "b>y", "b>x", "b>a", "c>z"), "s1", "1")
        assert await graph.mutuals("a", "b") == ["x", "y"]
        assert await graph.mutuals("b", "a") == ["x", "y"]
        assert await graph.mutuals("a", "a") == ["b", "x", "y"]
        assert await graph.mutuals("a", "c") == []
        assert await graph.mutuals("a", "nobody") == []

    async def test_close_twice_is_harmless(self, graph: GraphStore) -> None:
        await graph.close()
        await graph.close()
