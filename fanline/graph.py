"""The graph projection's processing, versions, replay and verification.

`run_graph`: the graph processor of `fanline process`, a shard consumer of its own, on its own
leases, beside the runner and the archiver when FANLINE_GRAPH is on. Its checkpoints are its
own (graph-leases), so it can lag, fail or be rebuilt without holding the timelines back.

Versions: the embedded graph on the sqlite backend is a projection like the Store's. Version ""
is graph.db with its leases graph-leases.db, version "r1" graph-r1.db and graph-leases-r1.db
(the applied marks live in the graph file itself). `fanline replay` rebuilds the new version's
graph after its store (`replay_graph`), seeds its leases, and the same pointer switches both:
the processor (`run_graph`) and the API (`open_following_graph`) follow it. Neptune (and the
embedded graph on the aws backend) is one graph for every version: its content does not depend
on the fold settings a version is about, so a replay leaves it alone and the processor keeps its
leases. A Neptune version would be a cluster (or a clone) per version named by the pointer, the
way the tables are named; not done, see README.

`verify_graph` replays the archive and the log into a scratch graph up to a graph's applied marks
and compares follow lists and handles (`fanline graph verify`, `fanline replay --verify`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from fanline import versions
from fanline.consuming import OnStop, consume_on_own_leases
from fanline.replay import Rebuilt, _records, seed_leases, shard_order
from fanline.settings import Settings
from fanline.wiring import open_graph, open_graph_leases
from processors.graph_projection import GraphProjector
from projections.graph import GraphStore
from projections.graph_gremlin import GremlinGraph
from projections.graph_switching import SwitchingGraph
from streams.archive import Archive
from streams.consumer import Consumer, to_batch
from streams.log import Log, ReadResult, Record, sequence_key

logger = logging.getLogger(__name__)

GRAPH_BATCH = 10_000  # events per graph transaction when rebuilding
SCRATCH = "verify"  # graph-verify.db: `fanline replay --verify`'s scratch graph
SHOWN_DIFFERENCES = 10


def versioned(settings: Settings) -> bool:
    """Whether each projection version has a graph of its own (see the module docstring)."""
    return settings.graph == "embedded" and settings.backend == "sqlite"


def graph_files(settings: Settings, version: str) -> list[Path]:
    """A version's embedded graph and graph leases, with SQLite's side files."""
    suffix = f"-{version}" if version else ""
    return [settings.data_dir / f"{name}{suffix}.db{extra}"
            for name in ("graph", "graph-leases") for extra in ("", "-wal", "-shm", "-journal")]


def drop_graph_version(settings: Settings, version: str) -> None:
    """Delete a version's graph and leases (never the active one: the caller checks)."""
    if versioned(settings):
        for path in graph_files(settings, version):
            path.unlink(missing_ok=True)


# --- processing -----------------------------------------------------------------------------


async def run_graph(settings: Settings, log: Log, worker_id: str, on_stop: OnStop) -> None:
    """Until stopped (batch finished, checkpointed, leases released); returns at once when off.
    Versioned, it moves to the new version's graph and leases when the pointer switches."""
    if settings.graph == "off":
        return
    if not versioned(settings):
        await _run_graph_version(settings, "", log, worker_id, on_stop, follow_pointer=False)
        return
    stopping = asyncio.Event()
    on_stop(stopping.set)
    while not stopping.is_set():
        version = await versions.active_version(settings)
        await _run_graph_version(settings, version, log, worker_id, on_stop, follow_pointer=True)


async def _run_graph_version(settings: Settings, version: str, log: Log, worker_id: str,
                             on_stop: OnStop, *, follow_pointer: bool) -> None:
    """One version's graph until stopped, or (`follow_pointer`) until the pointer leaves it."""
    graph = open_graph(settings, version)
    assert graph is not None
    try:
        leases = await open_graph_leases(settings, version)
        if not follow_pointer:
            await consume_on_own_leases(log, leases, GraphProjector(graph).handle, worker_id, on_stop)
            return
        try:
            consumer = Consumer(log, leases, GraphProjector(graph).handle, worker_id=worker_id)
            on_stop(consumer.stop)
            await versions.run_until_switch(settings, version, consumer, "graph processor")
        finally:
            await leases.close()
    finally:
        await graph.close()


# --- reading ----------------------------------------------------------------------------------


async def active_graph(settings: Settings) -> GraphStore | None:
    """The graph of the active projection version (None when off)."""
    return open_graph(settings, await versions.active_version(settings) if versioned(settings) else "")


async def open_following_graph(settings: Settings) -> GraphStore | None:
    """The read API's graph: the active version's, following the pointer; None when off."""
    if not versioned(settings):
        return open_graph(settings)

    def open_version(version: str) -> GraphStore:
        graph = open_graph(settings, version)
        assert graph is not None
        return graph

    pointer = await versions.open_pointer(settings)
    return await SwitchingGraph.open(pointer, open_version, check_every_s=versions.POINTER_CHECK_S)


# --- rebuilding -------------------------------------------------------------------------------


class GraphVerifyError(Exception):
    """The graph cannot be verified (the log lacks history, the graph moved meanwhile)."""


@dataclass(slots=True)
class GraphRebuilt:
    events: int = 0  # records read (those the graph had applied already included)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of this process, all threads (the graph's included)
    reached: Rebuilt = field(default_factory=Rebuilt)  # per shard the last record read; closed shards


async def rebuild_graph(log: Log, archive: Archive | None, graph: GraphStore, *,
                        until: dict[str, str] | None = None, batch: int = GRAPH_BATCH,
                        progress: Callable[[int], None] = lambda n: None) -> GraphRebuilt:
    """Fold the archive and the stream (as `fanline replay` reads them) into `graph`, shard by
    shard, parents first; `until`: per shard the last sequence (shards not named are skipped).
    Records at or before the graph's own applied marks are skipped: a rebuild killed part-way
    continues where its last batch ended."""
    started, cpu = time.perf_counter(), time.process_time()
    rebuilt = GraphRebuilt()
    projector = GraphProjector(graph)
    done = await graph.applied()
    order, in_log = await shard_order(log, archive)
    for shard_id in order:
        if until is not None and shard_id not in until:
            continue
        applied = sequence_key(done[shard_id]) if shard_id in done else None
        pending: list[Record] = []
        async for records in _records(log, archive, shard_id, shard_id in in_log,
                                      None if until is None else until[shard_id], rebuilt.reached):
            rebuilt.reached.last[shard_id] = records[-1].sequence
            rebuilt.events += len(records)
            progress(len(records))
            pending += [r for r in records if applied is None or sequence_key(r.sequence) > applied]
            while len(pending) >= batch:
                await projector.handle(to_batch(shard_id, ReadResult(pending[:batch], False, 0)))
                pending = pending[batch:]
        if pending:
            await projector.handle(to_batch(shard_id, ReadResult(pending, False, 0)))
    rebuilt.seconds = time.perf_counter() - started
    rebuilt.cpu_seconds = time.process_time() - cpu
    return rebuilt




async def replay_graph(settings: Settings, log: Log, archive: Archive | None, version: str) -> dict[str, Any]:
    """`fanline replay`'s graph part, before the switch: build `version`'s graph and seed its
    leases. Figures for the replay's JSON; {} when the graph is off or not versioned."""
    if not versioned(settings):
        if settings.graph != "off":
            click.echo("the graph is not versioned here (Neptune, or the aws backend): left as it is")
        return {}
    graph = open_graph(settings, version)
    assert graph is not None
    try:
        with tqdm(unit="ev", unit_scale=True, file=sys.stderr, mininterval=0.5, desc="graph") as bar:
            rebuilt = await rebuild_graph(log, archive, graph, progress=bar.update)
        leases = await open_graph_leases(settings, version)
        try:
            await seed_leases(leases, log, graph, rebuilt.reached, "graph")
        finally:
            await leases.close()
    finally:
        await graph.close()
    return {"graph_events": rebuilt.events, "graph_seconds": round(rebuilt.seconds, 3),
            "graph_cpu_s": round(rebuilt.cpu_seconds, 3)}


# --- verifying --------------------------------------------------------------------------------


@dataclass
class GraphCheck:
    events: int
    seconds: float
    users: int
    differences: list[str]


async def verify_graph(
    graph: GraphStore, log: Log, archive: Archive | None, scratch: GraphStore,
    progress: Callable[[int], None] = lambda n: None,
) -> GraphCheck:
    """Replay the archive and the log into `scratch` up to `graph`'s applied marks and compare.

    The history must still be whole (the archive, or a log that holds it from its start): a
    shard that ends before the mark is a clear error. Compare while the graph processor is
    stopped, or the marks move on.
    """
    started = time.perf_counter()
    until = await graph.applied()
    rebuilt = await rebuild_graph(log, archive, scratch, until=until, progress=progress)
    for shard_id, last in sorted(until.items()):
        if rebuilt.reached.last.get(shard_id) != last:
            raise GraphVerifyError(f"shard {shard_id}: the log ends before the graph's mark {last}; "
                                   "it no longer holds the whole history")
    live, replayed = await graph.follow_lists(), await scratch.follow_lists()
    if await graph.applied() != until:
        raise GraphVerifyError("the graph moved on while it was compared: stop `fanline process` first")
    users = sorted(set(live) | set(replayed))
    differences = [f"{u}: follows {live.get(u)} in the graph, {replayed.get(u)} replayed"
                   for u in users if live.get(u) != replayed.get(u)]
    live_handles, replayed_handles = await graph.handles(users), await scratch.handles(users)
    differences += [f"{u}: handle {live_handles.get(u)!r} in the graph, {replayed_handles.get(u)!r} replayed"
                    for u in users if live_handles.get(u) != replayed_handles.get(u)]
    return GraphCheck(rebuilt.events, time.perf_counter() - started, len(users), differences)


async def verify_graph_version(settings: Settings, log: Log, archive: Archive | None,
                               version: str) -> dict[str, Any]:
    """`fanline replay --verify`'s graph part: the live version's graph against the archive and
    the log replayed to its marks (scratch: graph-verify.db). Prints its verdict and the first
    differences; figures for the JSON, {} when the graph is off."""
    graph = open_graph(settings, version if versioned(settings) else "")
    if graph is None:
        return {}
    scratch_path = settings.data_dir / f"graph-{SCRATCH}.db"
    for path in graph_files(settings, SCRATCH):  # what an interrupted verify left
        path.unlink(missing_ok=True)
    scratch = GremlinGraph.embedded(scratch_path)
    try:
        with tqdm(unit="ev", unit_scale=True, file=sys.stderr, mininterval=0.5, desc="graph") as bar:
            check = await verify_graph(graph, log, archive, scratch, bar.update)
    except GraphVerifyError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        await scratch.close()
        await graph.close()
        for path in graph_files(settings, SCRATCH):
            path.unlink(missing_ok=True)
    identical = not check.differences
    click.echo(f"graph identical: {'true' if identical else 'false'} ({check.users} users)")
    for line in check.differences[:SHOWN_DIFFERENCES]:
        click.echo(f"  {line}")
    if len(check.differences) > SHOWN_DIFFERENCES:
        click.echo(f"  ... {len(check.differences) - SHOWN_DIFFERENCES} more")
    return {"graph_identical": identical, "graph_differences": len(check.differences),
            "graph_users": check.users, "graph_seconds": round(check.seconds, 3)}
