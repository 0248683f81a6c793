"""The graph processor of `fanline process`: a shard consumer of its own, on its own leases.

Beside the runner and the archiver when FANLINE_GRAPH is on. Its checkpoints are its own
(graph-leases), so it can lag, fail or be rebuilt without holding the timelines back.
`verify_graph` replays the log into a scratch graph up to the graph's applied marks and
compares (`fanline graph verify`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fanline.consuming import OnStop, consume_on_own_leases
from fanline.settings import Settings
from fanline.wiring import open_graph, open_graph_leases
from processors.graph_projection import GraphProjector
from projections.graph import GraphStore
from streams.consumer import to_batch
from streams.log import Log, Position, ReadResult, sequence_key


async def run_graph(settings: Settings, log: Log, worker_id: str, on_stop: OnStop) -> None:
    """Until stopped (batch finished, checkpointed, leases released); returns at once when off."""
    graph = open_graph(settings)
    if graph is None:
        return
    try:
        leases = await open_graph_leases(settings)
        await consume_on_own_leases(log, leases, GraphProjector(graph).handle, worker_id, on_stop)
    finally:
        await graph.close()



class GraphVerifyError(Exception):
    """The graph cannot be verified (the log lacks history, the graph moved meanwhile)."""


@dataclass
class GraphCheck:
    events: int
    seconds: float
    users: int
    differences: list[str]


async def verify_graph(graph: GraphStore, log: Log, scratch: GraphStore, batch: int = 10_000) -> GraphCheck:
    """Replay the log into `scratch` up to `graph`'s applied marks and compare the two graphs.

    Reads the log from its start (trim horizon), so the log must still hold the whole history
    (the SQLite log does; Kinesis only its retention period): a shard that ends before the mark
    is a clear error. Compare while the graph processor is stopped, or the marks move on.
    """
    started = time.perf_counter()
    until = await graph.applied()
    projector = GraphProjector(scratch)
    events = 0
    for shard_id, last in sorted(until.items()):
        reader = log.reader(shard_id, Position.trim_horizon())
        reached = False
        while not reached:
            result = await reader.read(batch)
            if not result.records:
                raise GraphVerifyError(f"shard {shard_id}: the log ends before the graph's mark {last}; "
                                       "it no longer holds the whole history")
            records = [r for r in result.records if sequence_key(r.sequence) <= sequence_key(last)]
            reached = len(records) < len(result.records) or records[-1].sequence == last
            if records:
                await projector.handle(to_batch(shard_id, ReadResult(records, False, 0)))
                events += len(records)
    live, rebuilt = await graph.follow_lists(), await scratch.follow_lists()
    if await graph.applied() != until:
        raise GraphVerifyError("the graph moved on while it was compared: stop `fanline process` first")
    users = sorted(set(live) | set(rebuilt))
    differences = [f"{u}: follows {live.get(u)} in the graph, {rebuilt.get(u)} replayed"
                   for u in users if live.get(u) != rebuilt.get(u)]
    live_handles, rebuilt_handles = await graph.handles(users), await scratch.handles(users)
    differences += [f"{u}: handle {live_handles.get(u)!r} in the graph, {rebuilt_handles.get(u)!r} replayed"
                    for u in users if live_handles.get(u) != rebuilt_handles.get(u)]
    return GraphCheck(events, time.perf_counter() - started, len(users), differences)
