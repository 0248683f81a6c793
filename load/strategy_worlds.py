"""One world, three strategies: the log is generated and loaded once, each strategy's
projections are replayed from it.

    <worlds>/<scale>-base       the world as `fanline world` builds it (hybrid projections),
                                or a copy of a prebuilt one; never served, so its log stays
                                exactly the world's events
    <worlds>/<scale>-<strategy> a copy of the base's log; the hybrid one takes the base's
                                projections and leases too, push and pull get theirs by
                                `fanline.replay.rebuild` (the replay's own fold, in batches of
                                thousands) with their leases seeded where the rebuild stopped

The base's log is also archived once (`fanline up` runs an archiver beside the processors, and
on a fresh world it would spend its first half minute reading all of it, just while the first
experiments measure); every strategy's world takes a copy of the archive and its leases.

A strategy's world is made in `<dir>.partial` and renamed when complete, so an interrupted
preparation leaves no half world that a later run would take for a whole one. Each marker
(`tiered-world.json`) says how its world was made and how long that took; for a replayed world
the posts and timeline entries are counted from the mutations the rebuild applied, as the
processors' metrics count them for a loaded one.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from fanline import versions
from fanline.commands.replay import BUILD_CACHE_MIB
from fanline.commands.world import MARKER, build, read_marker
from fanline.consuming import consume_on_own_leases
from fanline.replay import rebuild, seed_leases
from fanline.settings import Settings
from fanline.wiring import fold_settings, open_leases, open_log
from load.tiers import TieredWorld
from processors.archive import Archiver
from processors.metrics import measure
from projections.records import Mutation, PutPost
from projections.sqlite_store import SQLiteStore
from streams.leases import SHARD_END, TRIM_HORIZON
from streams.log import sequence_key

BASE_STRATEGY = "hybrid"  # what `fanline world` loads by default, and the prebuilt worlds hold
LOG_FILES = ("log.db", "log.db-wal", "archive-leases.db", "archive-leases.db-wal")
ARCHIVE_DIR = "archive"
ARCHIVE_POLL_S = 0.5
PROJECTION_FILES = ("store.db", "store.db-wal", "leases.db", "leases.db-wal")


class CountingStore(SQLiteStore):
    """The SQLite store, counting what is applied to it as the processors' metrics do."""

    posts = 0
    timeline_entries = 0
    items_written = 0

    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        await super().apply(mutations, shard_id, sequence)
        items, _, entries = measure(mutations)
        self.items_written += items
        self.timeline_entries += entries
        self.posts += sum(1 for m in mutations if isinstance(m, PutPost))


def base_dir(worlds: Path, scale: str) -> Path:
    return worlds / f"{scale}-base"


def strategy_dir(worlds: Path, scale: str, strategy: str) -> Path:
    return worlds / f"{scale}-{strategy}"


def _copy(source: Path, target: Path, names: Sequence[str]) -> None:
    """The log's archive and the named SQLite files (with their write-ahead logs when present)
    of a world no process has open."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (source / name).exists():
            shutil.copyfile(source / name, target / name)
    if (source / ARCHIVE_DIR).exists():
        shutil.copytree(source / ARCHIVE_DIR, target / ARCHIVE_DIR)


def _holds(marks: dict[str, str], checkpoints: dict[str, str]) -> bool:
    """Whether the archive's marks reach every position the projections have checkpointed."""
    return all(
        shard in marks and sequence_key(marks[shard]) >= sequence_key(checkpoint)
        for shard, checkpoint in checkpoints.items()
        if checkpoint not in (TRIM_HORIZON, SHARD_END)
    )


async def archive_world(data_dir: Path) -> None:
    """Run the archiver of `fanline up` on the world until the archive holds what its
    projections hold (nothing to do when it already does)."""
    settings = Settings.load({"data_dir": data_dir})
    leases = await open_leases(settings)
    try:
        checkpoints = {lease.shard_id: lease.checkpoint for lease in await leases.list()}
    finally:
        await leases.close()
    archive = await versions.open_archive(settings)
    assert archive is not None  # the sqlite backend always has its local archive
    log = await open_log(settings)
    try:
        if _holds(await archive.marks(), checkpoints):
            return
        stops: list[Callable[[], None]] = []
        archiver = consume_on_own_leases(
            log, await versions.open_archive_leases(settings), Archiver(archive).handle,
            f"world-archiver-{os.getpid()}", stops.append,
        )
        running = asyncio.create_task(archiver)
        try:
            while not running.done() and not _holds(await archive.marks(), checkpoints):
                await asyncio.sleep(ARCHIVE_POLL_S)
        finally:
            for stop in stops:
                stop()  # the batch in hand is finished and checkpointed first
            await running
        if not _holds(await archive.marks(), checkpoints):
            raise RuntimeError(f"the archiver of {data_dir} stopped before it held the world")
    finally:
        await log.close()
        await archive.close()


def _check(marker: dict[str, Any], where: Path, world: TieredWorld) -> None:
    found = (marker["users"], marker["seed"], marker["posts_per_user"])
    wanted = (world.users, world.seed, world.posts_per_user)
    if found != wanted:
        raise RuntimeError(f"{where} holds another world: users, seed, posts per user {found}, not {wanted}")


def ensure_base(
    worlds: Path, scale: str, world: TieredWorld, prebuilt: Path | None, say: Callable[[str], None]
) -> dict[str, Any]:
    """The scale's base world: kept, else copied from `prebuilt` (a `fanline world` directory,
    only read), else generated and loaded here."""
    target = base_dir(worlds, scale)
    marker = read_marker(target)
    if marker is None:
        began = time.monotonic()
        if target.exists():
            shutil.rmtree(target)  # an interrupted build: no marker, so not a world
        if prebuilt is not None:
            source = read_marker(prebuilt)
            if source is None:
                raise RuntimeError(f"{prebuilt} holds no world ({MARKER})")
            _check(source, prebuilt, world)
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            _copy(prebuilt, partial, (*LOG_FILES, *PROJECTION_FILES))
            (partial / MARKER).write_text(json.dumps({**source, "copied_from": str(prebuilt)}, indent=1))
            partial.rename(target)
            say(f"world {scale}: copied from {prebuilt} in {time.monotonic() - began:.1f} s")
        else:
            settings = Settings.load({"data_dir": target, "strategy": BASE_STRATEGY})
            build(settings, world, None, progress=True)
            say(f"world {scale}: generated and loaded in {time.monotonic() - began:.1f} s")
        marker = read_marker(target)
        assert marker is not None
    _check(marker, target, world)
    began = time.monotonic()
    asyncio.run(archive_world(target))
    say(f"world {scale}: archived in {time.monotonic() - began:.1f} s")
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
        "items_written": store.items_written,
    }


def derive(worlds: Path, scale: str, strategy: str, base: dict[str, Any]) -> dict[str, Any]:
    """The strategy's world from the base's log (see the module's docstring); its marker."""
    target = strategy_dir(worlds, scale, strategy)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    began = time.monotonic()
    source = base_dir(worlds, scale)
    same = strategy == base["strategy"]
    _copy(source, partial, (*LOG_FILES, *PROJECTION_FILES) if same else LOG_FILES)
    copy_s = round(time.monotonic() - began, 1)
    marker = {key: value for key, value in base.items() if key != "copied_from"}
    marker.update(strategy=strategy, derived_from=str(source), copy_s=copy_s)
    if not same:
        replayed = asyncio.run(replay_into(partial, strategy, int(base["celebrity_threshold"])))
        if replayed["events"] != base["events"]:
            found, wanted = replayed["events"], base["events"]
            raise RuntimeError(f"{source}: {found} events in the log, {wanted} in the world")
        marker.update(replayed, append_s=0.0, process_s=replayed["replay_s"])
    marker["total_s"] = round(time.monotonic() - began, 1)
    (partial / MARKER).write_text(json.dumps(marker, indent=1))
    partial.rename(target)
    return marker


def ensure_strategy_worlds(
    worlds: Path, scale: str, strategies: Sequence[str], world: TieredWorld, prebuilt: Path | None,
    say: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Each strategy's world at this scale: kept, else derived from the base (made first). The
    missing ones are derived at once, each in a process of its own: a replay is one busy
    thread, and nothing is measured yet."""
    markers = {strategy: read_marker(strategy_dir(worlds, scale, strategy)) for strategy in strategies}
    missing = [strategy for strategy, marker in markers.items() if marker is None]
    for strategy in missing:
        if strategy_dir(worlds, scale, strategy).exists():
            target = strategy_dir(worlds, scale, strategy)
            raise RuntimeError(f"{target} holds no world ({MARKER}): remove it, or use another --worlds")
    if missing:
        base = ensure_base(worlds, scale, world, prebuilt, say)
        with ProcessPoolExecutor(len(missing), mp_context=multiprocessing.get_context("spawn")) as pool:
            derived = {s: pool.submit(derive, worlds, scale, s, base) for s in missing}
            for strategy, future in derived.items():
                marker = markers[strategy] = future.result()
                how = "copied" if strategy == base["strategy"] else f"replayed in {marker['replay_s']} s"
                say(f"world {scale} {strategy}: {how}, {marker['total_s']} s in all")
    out = {}
    for strategy, found in markers.items():
        assert found is not None
        where = strategy_dir(worlds, scale, strategy)
        _check(found, where, world)
        if found["strategy"] != strategy:
            raise RuntimeError(f"{where} holds the {found['strategy']} projections, not {strategy}")
        out[strategy] = found
    return out
