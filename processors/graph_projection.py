"""The graph processor: a shard consumer's Handler folding the social events into the GraphStore.

    projector = GraphProjector(graph)
    consumer = Consumer(log, graph_leases, projector.handle, worker_id=...)

It runs beside the Runner with leases of its own (its own lease table), so it checkpoints
independently: a slow graph never holds the timelines back, and replaying one rebuilds it alone.

UserRegistered upserts the user's vertex with its handle; UserFollowed upserts both vertices
and the edge; UserUnfollowed deletes the edge; self-follows are ignored, as the Runner's fold
does. Every mutation is idempotent, so redeliveries need no applied-mark guard. Records that
do not decode are skipped here: the Runner dead-letters them (once, in the Store).
"""

from __future__ import annotations

from projections.graph import DeleteEdge, GraphMutation, GraphStore, PutEdge, UpsertUser
from streams.delivery import Batch, Delivered
from streams.events import Event, UserFollowed, UserRegistered, UserUnfollowed


def graph_mutations(event: Event) -> list[GraphMutation]:
    """The graph's mutations for one event (pure); [] for the events the graph does not hold."""
    match event:
        case UserRegistered():
            return [UpsertUser(event.data.user_id, event.data.handle)]
        case UserFollowed() if event.data.follower_id != event.data.followee_id:
            return [PutEdge(event.data.follower_id, event.data.followee_id)]
        case UserUnfollowed() if event.data.follower_id != event.data.followee_id:
            return [DeleteEdge(event.data.follower_id, event.data.followee_id)]
        case _:
            return []


class GraphProjector:
    def __init__(self, graph: GraphStore) -> None:
        self.graph = graph

    async def handle(self, batch: Batch) -> None:
        """Apply the batch's mutations and its applied mark; return once they are durable."""
        mutations = [
            m for item in batch.items if isinstance(item, Delivered) for m in graph_mutations(item.event)
        ]
        await self.graph.apply(mutations, batch.shard_id, batch.last_sequence)
