"""Loading a world on the bulk path: the same projections as the processors give, leases the
processors go on from, and the live path whenever the bulk one would not be safe."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from fanline import versions
from fanline.cli import main
from fanline.consuming import OnStop
from fanline.processing import run_projections
from fanline.settings import Settings
from fanline.wiring import fold_settings, open_leases, open_log
from load.loader import append_all, bulk_refusal, fold_bulk, load_events, process_live
from load.strategy_worlds import lease_checkpoints
from load.tiers import TieredWorld
from load.world import user_id
from processors.metrics import Metrics
from projections.items import COMPARED_TABLES, differences
from projections.sqlite_items import sqlite_rows
from streams.events import PostCreated, PostCreatedData
from streams.log import Appended, Log, Position, ReadResult, Shard, ShardReader

WORLD = TieredWorld(users=80, seed=5, posts_per_user=3)
LOG_FILES = ("log.db", "log.db-wal")


def _settings(data_dir: Path, **overrides: object) -> Settings:
    values = {"data_dir": data_dir, "celebrity_threshold": WORLD.celebrity_threshold(), **overrides}
    return Settings.load(values, environ={})


@pytest.mark.parametrize(("strategy", "cap"),
                         [("hybrid", None), ("push", None), ("pull", None), ("hybrid", 4)])
async def test_the_bulk_path_gives_exactly_what_the_processors_give(
    tmp_path: Path, strategy: str, cap: int | None
) -> None:
    # One log, copied: the same sequence numbers, so the applied marks compare too.
    extra = {"strategy": strategy} | ({"timeline_cap": cap} if cap else {})
    live, bulk = _settings(tmp_path / "live", **extra), _settings(tmp_path / "bulk", **extra)
    log = await open_log(live)
    last = await append_all(log, WORLD.events(), progress=False)
    await log.close()
    (tmp_path / "bulk").mkdir()
    for name in LOG_FILES:
        if (tmp_path / "live" / name).exists():
            shutil.copyfile(tmp_path / "live" / name, tmp_path / "bulk" / name)

    counted = await process_live(live, last, progress=False)
    figures = await fold_bulk(bulk, progress=False)

    assert counted["posts"] == WORLD.users * WORLD.posts_per_user
    assert figures["store_rows"] > 0 and figures["process_cpu_s"] >= 0
    for spec in COMPARED_TABLES:
        left = sqlite_rows(tmp_path / "live" / "store.db", spec)
        count, shown = differences(spec, left, sqlite_rows(tmp_path / "bulk" / "store.db", spec), 5)
        assert count == 0, (spec.name, shown)
    assert await lease_checkpoints(bulk) == await lease_checkpoints(live) == last


class CountingReader:
    def __init__(self, inner: ShardReader, log: CountingLog) -> None:
        self.inner, self.log = inner, log

    async def read(self, limit: int = 1000) -> ReadResult:
        result = await self.inner.read(limit)
        self.log.read += len(result.records)
        return result


class CountingLog:
    """A log counting the records its readers hand out."""

    def __init__(self, inner: Log) -> None:
        self.inner, self.read = inner, 0

    async def append(self, entries: Sequence[tuple[str, bytes]]) -> list[Appended]:
        return await self.inner.append(entries)

    async def shards(self) -> list[Shard]:
        return await self.inner.shards()

    def reader(self, shard_id: str, position: Position) -> ShardReader:
        return CountingReader(self.inner.reader(shard_id, position), self)

    async def wait_for_records(self, timeout_s: float) -> None:
        await self.inner.wait_for_records(timeout_s)

    async def close(self) -> None:
        await self.inner.close()


async def test_processing_goes_on_from_where_the_bulk_path_stopped(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    loaded = await load_events(settings, WORLD.events(), WORLD.event_count(), progress=False)
    assert loaded.path == "bulk"
    end = await lease_checkpoints(settings)
    assert end and all(checkpoint.isdigit() for checkpoint in end.values())

    # A post after the load, by a regular user (pushed under hybrid), then `fanline process`'s
    # projection processors on the same data directory until it is applied.
    author = user_id(WORLD.users - 1)
    follower = user_id(next(i for i in range(WORLD.users) if WORLD.users - 1 in WORLD.followees[i]))
    post = PostCreated(id="after-the-load", ts=WORLD.now_ms,
                       data=PostCreatedData(post_id="p-after", author_id=author, body="after the load"))
    log = CountingLog(await open_log(settings))
    ((shard, sequence),) = (await append_all(log, [post], progress=False)).items()
    stops: list[Callable[[], None]] = []
    on_stop: OnStop = stops.append
    processors = run_projections(settings, log, fold_settings(settings), Metrics(), "w", on_stop)
    running = asyncio.create_task(processors)
    store = await versions.open_store_version(settings, "")
    try:
        for _ in range(200):
            if (await store.applied()).get(shard) == sequence:
                break
            await asyncio.sleep(0.05)
        for stop in stops:
            stop()
        await running
        assert (await store.applied())[shard] == sequence
        assert log.read == 1  # the new event only: not the world again from the trim horizon
        timeline = await store.timeline_page(follower, 200, None)
        assert [e.post_id for e in timeline].count("p-after") == 1
    finally:
        await store.close()
        await log.close()
    assert (await lease_checkpoints(settings))[shard] == sequence


async def test_the_live_path_whenever_the_bulk_one_is_not_safe(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert await bulk_refusal(settings) is None  # nothing there yet
    leases = await open_leases(settings)
    log = await open_log(settings)
    await leases.ensure(await log.shards())
    (first, *_) = await leases.list()
    taken = await leases.take(first, "a-processor")
    assert taken is not None
    refusal = await bulk_refusal(settings)
    assert refusal is not None and "a-processor holds the lease" in refusal
    await leases.release(taken)
    await leases.close()
    await log.close()

    loaded = await load_events(settings, WORLD.events(), WORLD.event_count(), progress=False, live=True)
    assert loaded.path == "live" and loaded.why == "asked for (--live)"
    refusal = await bulk_refusal(settings)
    assert refusal is not None and "already holds events" in refusal
    aws = msgspec.structs.replace(settings, backend="aws")
    assert await bulk_refusal(aws) == "the aws backend has no bulk path"


def test_the_world_command_says_which_path_and_its_figures(tmp_path: Path) -> None:
    figures = {}
    for path, flags in (("bulk", []), ("live", ["--live"])):
        args = ["world", "--users", "40", "--posts", "2", "--data-dir", str(tmp_path / path), "--no-progress",
                *flags]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert f"processed on the {path} path" in result.output
        marker = json.loads((tmp_path / path / "tiered-world.json").read_text())
        assert marker["process_path"] == path
        figures[path] = marker
    # Each path's figures under their own names: the bulk path counts no fan-out.
    assert {"posts", "timeline_entries", "items_written"} <= figures["live"].keys()
    assert not {"posts", "timeline_entries", "items_written"} & figures["bulk"].keys()
    assert figures["bulk"]["store_rows"] > 0
    for spec in COMPARED_TABLES:
        if spec.name == "applied":
            continue  # two logs: two sets of sequence numbers
        left = sqlite_rows(tmp_path / "live" / "store.db", spec)
        count, shown = differences(spec, left, sqlite_rows(tmp_path / "bulk" / "store.db", spec), 5)
        assert count == 0, (spec.name, shown)


async def test_a_world_too_big_for_memory_is_processed_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("load.loader.BULK_MAX_EVENTS", WORLD.event_count() - 1)
    loaded = await load_events(_settings(tmp_path), WORLD.events(), WORLD.event_count(), progress=False)
    assert loaded.path == "live" and "more than the bulk path holds in memory" in loaded.why
    assert loaded.figures["posts"] == WORLD.users * WORLD.posts_per_user
