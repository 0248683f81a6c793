"""`fanline replay`: rebuild every projection into a new version, then switch the API to it.

    fanline replay                 build version rN from the archive and the stream's tail, with a
                                   progress bar and ETA, while the live version keeps serving; then
                                   seed rN's leases at the positions reached and move the pointer.
                                   The read API follows the pointer within a second; `fanline
                                   process` stops its batch, checkpoints, and continues on rN.
    fanline replay --verify        rebuild to exactly the live projections' positions (their applied
                                   mark per shard) into a scratch version, compare item by item,
                                   print `identical: true` or the first differences; exit 1 if any.
    fanline replay --drop-old      delete the versions a switch left behind.

A replay killed part-way is resumed by the next `fanline replay` (the pointer names the version
being built, and the runner skips what that version already applied). A new version is built
with the process's fold settings (FANLINE_STRATEGY, --strategy, ...), and the pointer records
them with it: replaying with others moves a deployment to them, since `fanline process`,
`fanline api` and the Lambda fold and read each version with its recorded settings. A resumed
build keeps the settings it began with; --verify rebuilds with the live version's.

--drop-old never deletes Terraform's tables: on the aws backend the first version ("", the
tables `<prefix><table>`) is kept and named as Terraform's to remove.

On the embedded backend a version with nothing applied yet is built on the bulk path (up to
--bulk-max-events): the same runner folds into memory, the store file is written at once in
key order, then the stream's tail is folded into it. Otherwise, and after it, batches stream
into SQLite. Either way the version commits without fsync while it is built and is synced
before the switch: nobody reads it before.

The last line printed is one JSON object: `events`, `events_per_s`, the baseline of the same run
(`read_events_per_s`: reading the same records, decoding and folding nothing) and their ratio,
`path` (bulk or streaming) and `bulk_events`, `bulk_rows`, `bulk_write_s`, and on the bulk path
on several cores `workers`, `merge_s` and `exchange_s` (fanline.bulk_workers), and for --verify
`identical`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import click
import msgspec
from tqdm import tqdm

from fanline import versions as v
from fanline.bulk_workers import parallel_bulk_rebuild
from fanline.commands.options import command_settings
from fanline.graph import drop_graph_version, replay_graph, verify_graph_version
from fanline.replay import Rebuilt, count_events, rebuild, seed_leases
from fanline.settings import Settings
from fanline.wiring import fold_settings, open_log
from processors.settings import FoldSettings
from projections.dynamodb_items import dynamodb_rows
from projections.dynamodb_store import DynamoDBStore
from projections.items import COMPARED_TABLES, differences
from projections.sqlite_bulk import has_applied, sync_store
from projections.sqlite_items import sqlite_rows
from projections.sqlite_store import SQLiteStore
from projections.store import Store
from streams.archive import Archive
from streams.log import Log

SCRATCH = "verify"
# SQLite's page cache for the version being built: with the default 2 MiB, the fan-out's writes
# all over a timelines table of millions of rows wait on the disk (the 5K world: twice as slow).
BUILD_CACHE_MIB = 256
SHOWN_DIFFERENCES = 10
# The most events a replay folds in memory before writing the store at once (the bulk path,
# fanline.replay.bulk_rebuild); above it, it streams into SQLite batch by batch. The 5K world
# measured ~0.6 KB of memory per event (803 611 events, 3.4M timeline entries: 585 MB peak).
BULK_MAX_EVENTS = 20_000_000


async def _build(settings: Settings, fold: FoldSettings, stack: AsyncExitStack, version: str, log: Log,
                 archive: Archive | None, until: dict[str, str] | None,
                 bulk_max_events: int, workers: int | None) -> tuple[Rebuilt, Rebuilt, Store]:
    """The baseline pass (reading only; it also gives the ETA its total), then the rebuild
    with `fold`: on SQLite, into a version with nothing applied yet and up to `bulk_max_events`, in
    memory then written at once (by `workers` processes: fanline.bulk_workers); then whatever is
    left, streamed into the version's store."""
    counted = await count_events(log, archive, until)
    path = v.store_path(settings, version)
    bulk = None
    with tqdm(total=counted.events, unit="ev", unit_scale=True, file=sys.stderr, mininterval=0.5,
              desc="replay") as bar:
        if (settings.backend == "sqlite" and counted.events <= bulk_max_events
                and not await asyncio.to_thread(has_applied, path)):
            bulk = await parallel_bulk_rebuild(log, archive, path, fold, until=until,
                                               counts=counted.shard_events, progress=bar.update,
                                               workers=workers)
        store: Store
        if settings.backend == "sqlite":  # no fsync per batch: `replay` syncs it before the switch
            store = SQLiteStore(path, cache_mib=BUILD_CACHE_MIB, durable=False)
        else:
            store = await v.open_store_version(settings, version, cache_mib=BUILD_CACHE_MIB)
        stack.push_async_callback(store.close)
        rebuilt = await rebuild(log, archive, store, fold, until=until, progress=bar.update, after=bulk)
    return counted, rebuilt, store


def _figures(counted: Rebuilt, rebuilt: Rebuilt) -> dict[str, Any]:
    return {
        "events": rebuilt.events, "seconds": round(rebuilt.seconds, 3),
        "cpu_s": round(rebuilt.cpu_seconds, 3),
        "events_per_cpu_s": round(rebuilt.events / rebuilt.cpu_seconds) if rebuilt.cpu_seconds else None,
        "events_per_s": round(rebuilt.events_per_s), "read_events_per_s": round(counted.events_per_s),
        "ratio_to_read": (round(rebuilt.events_per_s / counted.events_per_s, 4)
                          if counted.events_per_s else None),
        "path": "bulk" if rebuilt.bulk_events else "streaming", "bulk_events": rebuilt.bulk_events,
        "bulk_rows": rebuilt.bulk_rows, "bulk_write_s": round(rebuilt.bulk_write_seconds, 3),
        "workers": rebuilt.workers, "merge_s": round(rebuilt.merge_seconds, 3),
        "exchange_s": round(rebuilt.exchange_seconds, 3),
    }


async def replay(settings: Settings, bulk_max_events: int = BULK_MAX_EVENTS,
                 workers: int | None = None) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        pointer = await v.open_pointer(settings, create=True)
        stack.push_async_callback(pointer.close)
        versions = await pointer.get()
        version = versions.building or versions.next_version()
        if versions.building is None:
            fold = fold_settings(settings)
            click.echo(f"building projection version {version!r} (serving {versions.active!r})")
        else:
            # The settings it began with, not today's environment: one version, one set of settings
            # (the environment's for a build begun before the pointer recorded them).
            fold = v.version_fold(versions, version, fold_settings(settings))
            click.echo(f"resuming the build of projection version {version!r} (serving {versions.active!r})")
        if versions.building is None or version not in versions.fold:
            recorded = {**versions.fold, version: v.fold_record(fold)}
            await pointer.set(msgspec.structs.replace(versions, building=version, fold=recorded))
        click.echo(f"fold settings of {version!r}: {v.fold_record(fold)}")
        log = await open_log(settings)
        stack.push_async_callback(log.close)
        archive = await v.open_archive(settings)
        if archive is not None:
            stack.push_async_callback(archive.close)
        counted, rebuilt, store = await _build(settings, fold, stack, version, log, archive, None,
                                               bulk_max_events, workers)
        leases = await v.open_leases_version(settings, version)
        stack.push_async_callback(leases.close)
        await seed_leases(leases, log, store, rebuilt)
        if settings.backend == "sqlite":
            await asyncio.to_thread(sync_store, v.store_path(settings, version))
        graph_figures = await replay_graph(settings, log, archive, version)  # FANLINE_GRAPH: its graph too
        versions = await pointer.get()
        await pointer.set(msgspec.structs.replace(versions, active=version, building=None,
                                                  old=(*versions.old, versions.active)))
        click.echo(f"switched: the API now reads version {version!r}; {versions.active!r} is kept until "
                   "`fanline replay --drop-old`")
        return {**_figures(counted, rebuilt), **graph_figures, "version": version,
                "previous": versions.active}


async def _compare(
    settings: Settings, live: Store, scratch: Store, live_version: str
) -> tuple[int, list[str]]:
    total, shown = 0, list[str]()
    for spec in COMPARED_TABLES:
        if settings.backend == "sqlite":
            left = sqlite_rows(v.store_path(settings, live_version), spec)
            right = sqlite_rows(v.store_path(settings, SCRATCH), spec)
            count, found = await asyncio.to_thread(differences, spec, left, right, SHOWN_DIFFERENCES)
        else:
            assert isinstance(live, DynamoDBStore) and isinstance(scratch, DynamoDBStore)
            rows = await asyncio.gather(dynamodb_rows(live, spec), dynamodb_rows(scratch, spec))
            count, found = differences(spec, iter(rows[0]), iter(rows[1]), SHOWN_DIFFERENCES)
        total += count
        shown += found[: SHOWN_DIFFERENCES - len(shown)]
    return total, shown


async def verify(settings: Settings, bulk_max_events: int = BULK_MAX_EVENTS,
                 workers: int | None = None) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        pointer = await v.open_pointer(settings)
        versions = await pointer.get()
        await pointer.close()
        live_version = versions.active
        log = await open_log(settings)
        stack.push_async_callback(log.close)
        archive = await v.open_archive(settings)
        if archive is not None:
            stack.push_async_callback(archive.close)
        live = await v.open_store_version(settings, live_version)
        stack.push_async_callback(live.close)
        until = await live.applied()
        await v.drop_version(settings, SCRATCH)  # what an interrupted verify left
        stack.push_async_callback(v.drop_version, settings, SCRATCH)
        click.echo(f"verifying projection version {live_version!r} at {len(until)} shard positions")
        fold = v.version_fold(versions, live_version, fold_settings(settings))
        counted, rebuilt, scratch = await _build(settings, fold, stack, SCRATCH, log, archive, until,
                                                 bulk_max_events, workers)
        count, shown = await _compare(settings, live, scratch, live_version)
        graph_figures = await verify_graph_version(settings, log, archive, live_version)  # FANLINE_GRAPH
        moved = await live.applied() != until
        if moved:
            click.echo("note: the live projections moved on during the comparison (processors running); "
                       "differences may be theirs", err=True)
        click.echo(f"identical: {'true' if count == 0 else 'false'}")
        for line in shown:
            click.echo(f"  {line}")
        if count > len(shown):
            click.echo(f"  ... {count - len(shown)} more")
        return {**_figures(counted, rebuilt), **graph_figures,
                "identical": count == 0 and graph_figures.get("graph_identical", True), "differences": count,
                "version": live_version, "live_moved": moved}


async def drop_old_versions(settings: Settings) -> tuple[list[str], list[str]]:
    """Delete the old versions; answer those dropped and those kept because Terraform owns their
    tables (both leave the pointer's `old`: they are no longer the replay's to delete)."""
    pointer = await v.open_pointer(settings, create=True)
    try:
        versions = await pointer.get()
        dropped, kept = list[str](), list[str]()
        for old in versions.old:
            if old == versions.active:
                continue
            if v.terraforms(settings, old):
                kept.append(old)
                continue
            await v.drop_version(settings, old)
            drop_graph_version(settings, old)
            dropped.append(old)
        fold = {name: record for name, record in versions.fold.items() if name not in dropped}
        await pointer.set(msgspec.structs.replace(versions, old=(), fold=fold))
        return dropped, kept
    finally:
        await pointer.close()


@click.command("replay")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Embedded log and stores (default FANLINE_DATA_DIR or ./.fanline).")
@click.option("--endpoint-url", metavar="URL", help="Use Kinesis and DynamoDB at URL instead of SQLite.")
@click.option("--strategy", type=click.Choice(["push", "pull", "hybrid"]),
              help="Fan-out of the new version (default FANLINE_STRATEGY).")
@click.option("--celebrity-threshold", type=click.IntRange(min=1),
              help="Default FANLINE_CELEBRITY_THRESHOLD.")
@click.option("--verify", "verify_", is_flag=True, help="Rebuild to the live positions and compare.")
@click.option("--drop-old", is_flag=True, help="Delete the versions earlier switches left behind.")
@click.option("--bulk-max-events", type=click.IntRange(min=0), default=BULK_MAX_EVENTS, show_default=True,
              help="SQLite: fold up to this many events in memory and write the store at once; "
                   "above it, stream into SQLite batch by batch (0: always stream).")
@click.option("--workers", type=click.IntRange(min=1),
              help="SQLite bulk path: processes folding groups of shards (default: one per core).")
def replay_command(data_dir: Path | None, endpoint_url: str | None, strategy: str | None,
                   celebrity_threshold: int | None, verify_: bool, drop_old: bool,
                   bulk_max_events: int, workers: int | None) -> None:
    """Rebuild the projections from the archive and the stream; switch the API to them."""
    if verify_ and drop_old:
        raise click.UsageError("--verify and --drop-old exclude each other")
    settings = command_settings(data_dir=data_dir, endpoint_url=endpoint_url, strategy=strategy,
                                celebrity_threshold=celebrity_threshold)
    if settings.backend == "sqlite" and not (settings.data_dir / "log.db").exists():
        raise click.UsageError(f"no event log in {settings.data_dir} (is --data-dir right?)")
    if drop_old:
        dropped, kept = asyncio.run(drop_old_versions(settings))
        click.echo(f"dropped: {', '.join(repr(d) for d in dropped) or 'nothing'}")
        for old in kept:
            tables = f"{settings.table_prefix}<table>, {settings.table_prefix}leases"
            click.echo(f"kept: version {old!r} (tables {tables}): Terraform owns them and would recreate "
                       "them; nothing reads them now; they go with `terraform destroy`")
        click.echo(json.dumps({"dropped": dropped, "kept": kept}))
        return
    if verify_:
        figures = asyncio.run(verify(settings, bulk_max_events, workers))
        click.echo(json.dumps(figures))
        if not figures["identical"]:
            sys.exit(1)
        return
    click.echo(json.dumps(asyncio.run(replay(settings, bulk_max_events, workers))))
