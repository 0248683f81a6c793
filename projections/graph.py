"""The GraphStore port: the social graph as a second projection of the stream (Gremlin).

Vertices are users (property `user_id`, and `handle` once registered); a `follows` edge goes
from follower to followee. The follower lists of the Store stay the source of fan-out; the
graph answers what a graph is good at: who to follow, and followees in common.

Every mutation is an absolute upsert or delete, so applying a batch twice, or half of it and
then all of it, leaves the same graph (at-least-once delivery is safe). An edge is written only
from its followee's shard (the partition key of follows), in stream order, so the last event
of a pair decides, live and on replay alike.

Adapter: `projections.graph_gremlin.GremlinGraph` (embedded gremlite, or Neptune), passing
`tests/graph/graph_contract.py`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class UpsertUser:
    user_id: str
    handle: str


@dataclass(frozen=True, slots=True)
class PutEdge:
    follower_id: str
    followee_id: str


@dataclass(frozen=True, slots=True)
class DeleteEdge:
    follower_id: str
    followee_id: str


GraphMutation = UpsertUser | PutEdge | DeleteEdge


class GraphUnavailable(Exception):
    """The graph refused (a locked file, an unreachable cluster) after the adapter's own waiting."""


def rank_suggestions(
    user_id: str, followees: Iterable[str], second_hop: Iterable[str], limit: int
) -> list[tuple[str, int]]:
    """Who to follow: (candidate, score) best first.

    `second_hop` holds one entry per (followee, followee's followee) path; a candidate's score
    is how many of the user's followees follow it. The user and those already followed are
    left out; ties go by user id, so every backend answers the same list.
    """
    return rank_scores(user_id, followees, Counter(second_hop), limit)


def rank_scores(
    user_id: str, followees: Iterable[str], paths: Mapping[str, int], limit: int
) -> list[tuple[str, int]]:
    """`rank_suggestions` over counts already made: `paths[c]` two-hop paths end at c."""
    already = set(followees)
    scores = [(c, n) for c, n in paths.items() if c != user_id and c not in already]
    return sorted(scores, key=lambda kv: (-kv[1], kv[0]))[:limit]


class GraphStore(Protocol):
    async def apply(self, mutations: Sequence[GraphMutation], shard_id: str, sequence: str) -> None:
        """Make the mutations durable, then record `sequence` as applied for `shard_id`."""
        ...

    async def applied(self) -> dict[str, str]:
        """The last applied sequence per shard."""
        ...

    async def following_ids(self, user_id: str) -> list[str]:
        """Whom the user follows, sorted (replay checks compare it with the Store's)."""
        ...

    async def follow_lists(self) -> dict[str, list[str]]:
        """Every user vertex with whom it follows, sorted: the whole graph (replay verification)."""
        ...

    async def handles(self, user_ids: Sequence[str]) -> dict[str, str]:
        """The handles of the registered users among `user_ids`."""
        ...

    async def suggestions(self, user_id: str, limit: int) -> list[tuple[str, int]]:
        """`rank_suggestions` over the graph; [] for a user the graph does not know."""
        ...

    async def mutuals(self, a: str, b: str) -> list[str]:
        """The followees a and b have in common, sorted."""
        ...

    async def close(self) -> None: ...
