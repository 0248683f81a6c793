"""The graph processor of `fanline process`: a shard consumer of its own, on its own leases.

Beside the runner and the archiver when FANLINE_GRAPH is on. Its checkpoints are its own
(graph-leases), so it can lag, fail or be rebuilt without holding the timelines back.
"""

from __future__ import annotations

from collections.abc import Callable

from fanline.settings import Settings
from fanline.wiring import open_graph, open_graph_leases
from processors.graph_projection import GraphProjector
from streams.consumer import Consumer
from streams.log import Log

OnStop = Callable[[Callable[[], None]], None]


async def run_graph(settings: Settings, log: Log, worker_id: str, on_stop: OnStop) -> None:
    """Until stopped (batch finished, checkpointed, leases released); returns at once when off."""
    graph = open_graph(settings)
    if graph is None:
        return
    try:
        leases = await open_graph_leases(settings)
        try:
            consumer = Consumer(log, leases, GraphProjector(graph).handle, worker_id=worker_id)
            on_stop(consumer.stop)
            await consumer.run()
        finally:
            await leases.close()
    finally:
        await graph.close()

