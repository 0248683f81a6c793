"""One world, three strategies: the world's log is generated and appended once, each
strategy's projections are replayed from it.

    <worlds>/<scale>-base       the world's log (bulk-appended through the Log port, no
                                projections), or a copy of a world `fanline world` built
                                (log and hybrid projections); never served, so its log stays
                                exactly the world's events
    <worlds>/<scale>-<strategy> a copy of the base's log with the strategy's projections:
                                replayed by `fanline.replay.rebuild` (the processors' fold, in
                                batches of thousands), the processors' leases seeded where it
                                stopped; copied when the base already holds them and
                                the processors counted their writes (a world `fanline
                                world` folded on the bulk path counts none: replayed)

The missing worlds are made at once, one process each (a replay is one busy thread, and
nothing is measured yet), beside a process archiving the base's log: `fanline up` runs an
archiver next to the processors, and on a fresh world it would spend its first half minute
reading all of it just while the first experiments measure, so every world takes a copy of
the finished archive and its leases.

A strategy's world is made in `<dir>.partial` and renamed when complete, so an interrupted
preparation leaves no half world that a later run would take for a whole one. Each marker
(`tiered-world.json`) says how its world was made and how long that took; for a replayed world
the posts and timeline entries are counted from the mutations the rebuild applied, as the
processors' metrics count them when `fanline world` loads one.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fanline import versions
from fanline.commands.replay import BUILD_CACHE_MIB
from fanline.commands.world import MARKER, PROCESSING_KEYS, read_marker
from fanline.consuming import consume_on_own_leases
from fanline.replay import rebuild, seed_leases
from fanline.settings import Settings
from fanline.wiring import fold_settings, open_leases, open_log
from load.loader import append_all
from load.tiers import TieredWorld
from processors.archive import Archiver
from projections.records import Mutation, PutPost, PutTimelineEntries
from projections.sqlite_store import SQLiteStore
from streams.leases import SHARD_END, TRIM_HORIZON
from streams.log import sequence_key

LOG_FILES = ("log.db", "log.db-wal")
ARCHIVE_FILES = ("archive-leases.db", "archive-leases.db-wal")
ARCHIVE_DIR = "archive"
ARCHIVE_POLL_S = 0.5
PROJECTION_FILES = ("store.db", "store.db-wal", "leases.db", "leases.db-wal")


class CountingStore(SQLiteStore):
    """The SQLite store, counting the posts and timeline entries applied to it (what the
    processors' metrics count as events of type PostCreated and as deliveries)."""

    posts = 0
    timeline_entries = 0

    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        await super().apply(mutations, shard_id, sequence)
        # Not `processors.metrics.measure`: its byte sizes cost a tenth of a replay's time.
        for mutation in mutations:
            if isinstance(mutation, PutTimelineEntries):
                self.timeline_entries += len(mutation.entries)
            elif isinstance(mutation, PutPost):
                self.posts += 1


def base_dir(worlds: Path, scale: str) -> Path:
    return worlds / f"{scale}-base"


def strategy_dir(worlds: Path, scale: str, strategy: str) -> Path:
    return worlds / f"{scale}-{strategy}"


def _copy(source: Path, target: Path, names: Sequence[str], archive: bool = False) -> None:
    """The named SQLite files (with their write-ahead logs when present), and the archive's
    directory if asked, of a world no process writes to."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (source / name).exists():
            shutil.copyfile(source / name, target / name)
    if archive and (source / ARCHIVE_DIR).exists():
        shutil.copytree(source / ARCHIVE_DIR, target / ARCHIVE_DIR)


def _holds(marks: dict[str, str], checkpoints: dict[str, str]) -> bool:
    """Whether the archive's marks reach every position the projections have checkpointed."""
    return all(
        shard in marks and sequence_key(marks[shard]) >= sequence_key(checkpoint)
        for shard, checkpoint in checkpoints.items()
        if checkpoint not in (TRIM_HORIZON, SHARD_END)
    )


async def archive_world(data_dir: Path, log_end: dict[str, str]) -> float:
    """Run the archiver of `fanline up` on the world until the archive holds the log up to
    `log_end` (per shard, the last sequence); the seconds it took (none when it already did)."""
    began = time.monotonic()
    settings = Settings.load({"data_dir": data_dir})
    archive = await versions.open_archive(settings)
    assert archive is not None  # the sqlite backend always has its local archive
    log = await open_log(settings)
    try:
        if _holds(await archive.marks(), log_end):
            return 0.0
        stops: list[Callable[[], None]] = []
        archiver = consume_on_own_leases(
            log, await versions.open_archive_leases(settings), Archiver(archive).handle,
            f"world-archiver-{os.getpid()}", stops.append,
        )
        running = asyncio.create_task(archiver)
        try:
            while not running.done() and not _holds(await archive.marks(), log_end):
                await asyncio.sleep(ARCHIVE_POLL_S)
        finally:
            for stop in stops:
                stop()  # the batch in hand is finished and checkpointed first
            await running
        if not _holds(await archive.marks(), log_end):
            raise RuntimeError(f"the archiver of {data_dir} stopped before it held the world")
    finally:
        await log.close()
        await archive.close()
    return round(time.monotonic() - began, 1)


async def lease_checkpoints(settings: Settings) -> dict[str, str]:
    """Each shard's checkpoint in the first version's lease table."""
    leases = await open_leases(settings)
    try:
        return {lease.shard_id: lease.checkpoint for lease in await leases.list()}
    finally:
        await leases.close()


async def append_world(settings: Settings, world: TieredWorld) -> dict[str, Any]:
    """Generate the world's events and append them to the settings' log: the base's marker."""
    began = time.monotonic()
    total = world.event_count()  # draws the graph
    graph_s = time.monotonic() - began
    log = await open_log(settings)
    try:
        log_end = await append_all(log, world.events(), total, progress=True)
    finally:
        await log.close()
    return {
        "users": world.users, "seed": world.seed, "posts_per_user": world.posts_per_user,
        "now_ms": world.now_ms, "events": total, "strategy": None,
        "celebrity_threshold": world.celebrity_threshold(), "graph_s": round(graph_s, 1),
        "append_s": round(time.monotonic() - began - graph_s, 1), "process_s": 0.0,
        "total_s": round(time.monotonic() - began, 1), "log_end": log_end,
        "distribution": [asdict(s) for s in world.distribution()],
    }


def _check(marker: dict[str, Any], where: Path, world: TieredWorld) -> None:
    found = (marker["users"], marker["seed"], marker["posts_per_user"])
    wanted = (world.users, world.seed, world.posts_per_user)
    if found != wanted:
        raise RuntimeError(f"{where} holds another world: users, seed, posts per user {found}, not {wanted}")


def ensure_base(
    worlds: Path, scale: str, world: TieredWorld, prebuilt: Path | None, say: Callable[[str], None]
) -> dict[str, Any]:
    """The scale's base world: kept, else copied from `prebuilt` (a `fanline world` directory,
    only read), else generated and appended here."""
    target = base_dir(worlds, scale)
    marker = read_marker(target)
    if marker is None:
        began = time.monotonic()
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        if prebuilt is not None:
            source = read_marker(prebuilt)
            if source is None:
                raise RuntimeError(f"{prebuilt} holds no world ({MARKER})")
            _check(source, prebuilt, world)
            _copy(prebuilt, partial, (*LOG_FILES, *PROJECTION_FILES, *ARCHIVE_FILES), archive=True)
            # Its processors caught up with the whole log: their checkpoints are where it ends.
            log_end = asyncio.run(lease_checkpoints(Settings.load({"data_dir": partial})))
            marker = {**source, "copied_from": str(prebuilt), "log_end": log_end}
            say(f"world {scale}: copied from {prebuilt} in {time.monotonic() - began:.1f} s")
        else:
            marker = asyncio.run(append_world(Settings.load({"data_dir": partial}), world))
            say(f"world {scale}: {marker['events']:,} events generated and appended in {marker['total_s']} s")
        (partial / MARKER).write_text(json.dumps(marker, indent=1))
        partial.rename(target)
    _check(marker, target, world)
    return marker


async def replay_into(data_dir: Path, strategy: str, threshold: int) -> dict[str, Any]:
    """Rebuild the projections of `data_dir`'s log with `strategy` into a fresh store, and
    give its processors' leases the positions reached."""
    settings = Settings.load({"data_dir": data_dir, "strategy": strategy, "celebrity_threshold": threshold})
    log = await open_log(settings)
    try:
        store = CountingStore(versions.store_path(settings, ""), cache_mib=BUILD_CACHE_MIB)
        try:
            rebuilt = await rebuild(log, None, store, fold_settings(settings))
            leases = await versions.open_leases_version(settings, "")
            try:
                await seed_leases(leases, log, store, rebuilt)
            finally:
                await leases.close()
        finally:
            await store.close()
    finally:
        await log.close()
    return {
        "events": rebuilt.events,
        "replay_s": round(rebuilt.seconds, 1),
        "replay_cpu_s": round(rebuilt.cpu_seconds, 1),
        "posts": store.posts,
        "timeline_entries": store.timeline_entries,
    }


def derive(partial: Path, strategy: str, base: dict[str, Any]) -> dict[str, Any]:
    """Replay the strategy's projections in `partial`, which holds a copy of the base's log;
    the figures for its marker."""
    replayed = asyncio.run(replay_into(partial, strategy, int(base["celebrity_threshold"])))
    if replayed["events"] != base["events"]:
        found, wanted = replayed["events"], base["events"]
        raise RuntimeError(f"{partial}: {found} events in the log, {wanted} in the world")
    return {**replayed, "process_s": replayed["replay_s"]}  # append_s stays the base's: one log


def _archive(data_dir: Path, log_end: dict[str, str]) -> float:
    return asyncio.run(archive_world(data_dir, log_end))


def ensure_strategy_worlds(
    worlds: Path, scale: str, strategies: Sequence[str], world: TieredWorld, prebuilt: Path | None,
    say: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Each strategy's world at this scale: kept, else made from the base (see the module's
    docstring)."""
    markers = {strategy: read_marker(strategy_dir(worlds, scale, strategy)) for strategy in strategies}
    missing = [strategy for strategy, marker in markers.items() if marker is None]
    for strategy in missing:
        if strategy_dir(worlds, scale, strategy).exists():
            target = strategy_dir(worlds, scale, strategy)
            raise RuntimeError(f"{target} holds no world ({MARKER}): remove it, or use another --worlds")
    if missing:
        _make(worlds, scale, missing, ensure_base(worlds, scale, world, prebuilt, say), markers, say)
    out = {}
    for strategy, found in markers.items():
        assert found is not None
        where = strategy_dir(worlds, scale, strategy)
        _check(found, where, world)
        if found["strategy"] != strategy:
            raise RuntimeError(f"{where} holds the {found['strategy']} projections, not {strategy}")
        out[strategy] = found
    return out


def _make(
    worlds: Path, scale: str, strategies: Sequence[str], base: dict[str, Any],
    markers: dict[str, dict[str, Any] | None], say: Callable[[str], None],
) -> None:
    source = base_dir(worlds, scale)
    began = time.monotonic()
    # A prebuilt world's projections are copied when the processors counted what they wrote (the
    # storage experiment's figures); a world folded on the bulk path counts none: replayed here.
    kept = base["strategy"] if "timeline_entries" in base else None
    partials = {}
    for strategy in strategies:  # before the archiver opens the base's log
        partials[strategy] = strategy_dir(worlds, scale, strategy).with_name(f"{scale}-{strategy}.partial")
        shutil.rmtree(partials[strategy], ignore_errors=True)
        copied = (*LOG_FILES, *PROJECTION_FILES) if strategy == kept else LOG_FILES
        _copy(source, partials[strategy], copied)
    copy_s = round(time.monotonic() - began, 1)
    context = multiprocessing.get_context("spawn")  # no forking of a process with threads
    with ProcessPoolExecutor(len(strategies) + 1, mp_context=context) as pool:
        archived = pool.submit(_archive, source, base["log_end"])
        replays: dict[str, Future[dict[str, Any]]] = {
            s: pool.submit(derive, partials[s], s, base) for s in strategies if s != kept
        }
        say(f"world {scale}: archived in {archived.result()} s")
        for strategy in strategies:
            marker = {key: value for key, value in base.items() if key != "copied_from"}
            marker.update(strategy=strategy, derived_from=str(source), copy_s=copy_s)
            if strategy in replays:
                for key in PROCESSING_KEYS:  # a prebuilt base's, of its own projections
                    marker.pop(key, None)
                marker.update(replays[strategy].result())
                how = f"replayed in {marker['replay_s']} s ({marker['replay_cpu_s']} CPU-s)"
            else:
                how = "copied"
            _copy(source, partials[strategy], ARCHIVE_FILES, archive=True)
            marker["total_s"] = round(time.monotonic() - began, 1)
            (partials[strategy] / MARKER).write_text(json.dumps(marker, indent=1))
            partials[strategy].rename(strategy_dir(worlds, scale, strategy))
            markers[strategy] = marker
            say(f"world {scale} {strategy}: {how}, ready after {marker['total_s']} s")
