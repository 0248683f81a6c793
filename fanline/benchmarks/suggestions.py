"""Suggestions on the read bench's world: the graph projection against the Store's follow lists.

The world's log (fanline.benchmarks.read_world) is folded once by the graph processor into
`graph.db` beside it (`graph.json`, written last, says it is complete). Then, in this process,
for the same readers, in turn: `GremlinGraph.suggestions` (what the route asks when
FANLINE_GRAPH=embedded: SQL over gremlite's quads) and `api.read.store_suggestions` over the
SQLiteStore (the route's answer without a graph; the baseline); then, in passes of its own, the
same through the Gremlin traversal (what Neptune is asked: `traversal_*`). A first pass warms
them (page cache; the graph's id -> user_id map, as a running server's would be); the second is
timed. Every answer of the graph, either way, must equal the Store's.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from api.read import store_suggestions
from fanline.benchmarks.read_world import READ_BATCH, log_path, store_path
from processors.graph_projection import GraphProjector
from projections.graph_gremlin import GremlinGraph
from projections.sqlite_store import SQLiteStore
from streams.consumer import to_batch
from streams.log import Position
from streams.sqlite_log import SQLiteLog

LIMIT = 10


def graph_path(data_dir: Path) -> Path:
    return data_dir / "graph.db"


@dataclass(frozen=True)
class SuggestionFigures:
    graph_build_s: float
    readers: int
    graph_p50_ms: float
    graph_p99_ms: float
    traversal_p50_ms: float
    traversal_p99_ms: float
    store_p50_ms: float
    store_p99_ms: float
    mismatches: int
    empty: int


async def build_graph(data_dir: Path) -> float:
    """Fold the world's log into the graph unless done before; the seconds it took then."""
    marker = data_dir / "graph.json"
    if marker.exists():
        built: float = json.loads(marker.read_text())["build_s"]
        return built
    for extra in ("", "-wal", "-shm", "-journal"):  # an unfinished build: start again
        Path(f"{graph_path(data_dir)}{extra}").unlink(missing_ok=True)
    started = time.monotonic()
    log = SQLiteLog(log_path(data_dir), shard_count=4)
    graph = GremlinGraph.embedded(graph_path(data_dir))
    try:
        projector = GraphProjector(graph)
        for shard in await log.shards():
            reader = log.reader(shard.shard_id, Position.trim_horizon())
            while (result := await reader.read(READ_BATCH)).records:
                await projector.handle(to_batch(shard.shard_id, result))
    finally:
        await graph.close()
        await log.close()
    seconds = round(time.monotonic() - started, 1)
    marker.write_text(json.dumps({"build_s": seconds}))
    return seconds


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def measure(data_dir: Path, readers: list[str]) -> SuggestionFigures:
    build_s = await build_graph(data_dir)
    graph = GremlinGraph.embedded(graph_path(data_dir))
    traversing = GremlinGraph.embedded(graph_path(data_dir), sql=False)
    store = SQLiteStore(store_path(data_dir))
    try:
        graph_ms: list[float] = []
        traversal_ms: list[float] = []
        store_ms: list[float] = []
        mismatches = empty = 0
        answers: dict[str, list[tuple[str, int]]] = {}
        for timed in (False, True):
            for reader in readers:
                t0 = time.perf_counter()
                from_graph = await graph.suggestions(reader, LIMIT)
                t1 = time.perf_counter()
                answers[reader] = await store_suggestions(store, reader, LIMIT)
                t2 = time.perf_counter()
                if timed:
                    graph_ms.append((t1 - t0) * 1000)
                    store_ms.append((t2 - t1) * 1000)
                    mismatches += from_graph != answers[reader]
                    empty += not from_graph
        # Apart, so the two answers of the route are timed call by call as before: the
        # traversal's thousands of objects a call could add garbage collection to their calls.
        for timed in (False, True):
            for reader in readers:
                t0 = time.perf_counter()
                from_traversal = await traversing.suggestions(reader, LIMIT)
                if timed:
                    traversal_ms.append((time.perf_counter() - t0) * 1000)
                    mismatches += from_traversal != answers[reader]
    finally:
        await store.close()
        await traversing.close()
        await graph.close()
    return SuggestionFigures(
        graph_build_s=build_s, readers=len(readers),
        graph_p50_ms=round(statistics.median(graph_ms), 2), graph_p99_ms=_percentile(graph_ms, 0.99),
        traversal_p50_ms=round(statistics.median(traversal_ms), 2),
        traversal_p99_ms=_percentile(traversal_ms, 0.99),
        store_p50_ms=round(statistics.median(store_ms), 2), store_p99_ms=_percentile(store_ms, 0.99),
        mismatches=mismatches, empty=empty,
    )


def figures_dict(figures: SuggestionFigures) -> dict[str, float]:
    return {f"suggestions_{k}": v for k, v in asdict(figures).items()}
