"""One world's log, each strategy's projections replayed from it: the same as loading the world
with that strategy, archived once, kept between runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from fanline.commands.world import build
from fanline.settings import Settings
from load.experiments import STRATEGIES
from load.strategy_worlds import base_dir, ensure_strategy_worlds, strategy_dir
from load.tiers import TieredWorld
from projections.items import COMPARED_TABLES, differences
from projections.sqlite_items import sqlite_rows
from streams.archive import LocalArchive
from streams.sqlite_leases import SQLiteLeaseStore

WORLD = TieredWorld(users=60, seed=3)


async def _checkpoints(path: Path) -> dict[str, str]:
    leases = SQLiteLeaseStore(path)
    try:
        return {lease.shard_id: lease.checkpoint for lease in await leases.list()}
    finally:
        await leases.close()


def test_each_strategy_world_is_the_world_loaded_with_that_strategy(tmp_path: Path) -> None:
    worlds = tmp_path / "worlds"
    said: list[str] = []
    markers = ensure_strategy_worlds(worlds, "60", STRATEGIES, WORLD, None, said.append)
    assert {m["events"] for m in markers.values()} == {WORLD.event_count()}
    assert markers["pull"]["timeline_entries"] == 0
    assert markers["push"]["timeline_entries"] > markers["hybrid"]["timeline_entries"] > 0

    for strategy in STRATEGIES:
        loaded_dir = tmp_path / f"loaded-{strategy}"
        settings = Settings.load({"data_dir": loaded_dir, "strategy": strategy}, environ={})
        # live: counted by the processors
        loaded = build(settings, WORLD, None, progress=False, echo=False, live=True)
        replayed = markers[strategy]
        for key in ("posts", "timeline_entries", "celebrity_threshold"):
            assert replayed[key] == loaded[key], key
        for spec in COMPARED_TABLES:
            if spec.name == "applied":
                continue  # the positions in each log: two logs, two sets of sequence numbers
            left = sqlite_rows(strategy_dir(worlds, "60", strategy) / "store.db", spec)
            count, shown = differences(spec, left, sqlite_rows(loaded_dir / "store.db", spec), 5)
            assert count == 0, (strategy, spec.name, shown)

    # Every world's processors and archiver go on from the world's end: `fanline up` has no
    # backlog to work through while the experiments measure.
    end = json.loads((base_dir(worlds, "60") / "tiered-world.json").read_text())["log_end"]
    assert end and all(checkpoint.isdigit() for checkpoint in end.values())
    assert not (base_dir(worlds, "60") / "store.db").exists()  # the base: the log alone
    for strategy in STRATEGIES:
        where = strategy_dir(worlds, "60", strategy)
        assert asyncio.run(_checkpoints(where / "leases.db")) == end
        assert asyncio.run(_checkpoints(where / "archive-leases.db")) == end
        assert asyncio.run(LocalArchive(where / "archive").marks()) == end

    again: list[str] = []
    assert ensure_strategy_worlds(worlds, "60", STRATEGIES, WORLD, None, again.append) == markers
    assert again == []  # nothing made again


def test_a_prebuilt_world_is_copied_and_left_as_it_was(tmp_path: Path) -> None:
    prebuilt = tmp_path / "prebuilt"
    settings = Settings.load({"data_dir": prebuilt}, environ={})
    build(settings, WORLD, None, progress=False, echo=False, live=True)
    before = {p.name: p.read_bytes() for p in prebuilt.iterdir() if p.is_file()}
    worlds = tmp_path / "worlds"
    said: list[str] = []
    markers = ensure_strategy_worlds(worlds, "60", ["pull", "hybrid"], WORLD, prebuilt, said.append)
    assert any("copied from" in line for line in said)
    assert markers["pull"]["events"] == WORLD.event_count() and markers["pull"]["timeline_entries"] == 0
    assert "replay_s" in markers["pull"] and "replay_s" not in markers["hybrid"]  # the prebuilt's own
    assert "items_written" not in markers["pull"]  # the prebuilt hybrid's count is not pull's
    hybrid = strategy_dir(worlds, "60", "hybrid")
    assert (hybrid / "store.db").read_bytes() == before["store.db"]
    assert asyncio.run(_checkpoints(hybrid / "archive-leases.db")) == asyncio.run(
        _checkpoints(prebuilt / "leases.db")
    )
    assert {p.name: p.read_bytes() for p in prebuilt.iterdir() if p.is_file()} == before
    base = json.loads((base_dir(worlds, "60") / "tiered-world.json").read_text())
    assert base["copied_from"] == str(prebuilt)

    other = TieredWorld(users=61, seed=3)
    with pytest.raises(RuntimeError, match="another world"):
        ensure_strategy_worlds(tmp_path / "elsewhere", "61", ["pull"], other, prebuilt, said.append)
    with pytest.raises(RuntimeError, match="another world"):
        ensure_strategy_worlds(worlds, "60", ["pull"], other, None, said.append)  # the kept one is not it


def test_a_prebuilt_world_folded_on_the_bulk_path_is_replayed_for_its_counts(tmp_path: Path) -> None:
    prebuilt = tmp_path / "prebuilt"
    built = build(Settings.load({"data_dir": prebuilt}, environ={}), WORLD, None, progress=False, echo=False)
    assert built["process_path"] == "bulk" and "timeline_entries" not in built
    worlds = tmp_path / "worlds"
    markers = ensure_strategy_worlds(worlds, "60", ["hybrid"], WORLD, prebuilt, [].append)
    hybrid = markers["hybrid"]
    # The storage experiment's figures, counted by a replay, and none of the bulk path's own.
    assert "replay_s" in hybrid and hybrid["timeline_entries"] > 0 and hybrid["posts"] == WORLD.users * 10
    bulk_only = {"process_path", "process_path_why", "store_rows", "bulk_write_s", "process_cpu_s",
                 "bulk_workers"}
    assert not bulk_only & hybrid.keys()
    for spec in COMPARED_TABLES:  # one log, copied: the applied marks too
        left = sqlite_rows(strategy_dir(worlds, "60", "hybrid") / "store.db", spec)
        count, shown = differences(spec, left, sqlite_rows(prebuilt / "store.db", spec), 5)
        assert count == 0, (spec.name, shown)


def test_a_half_made_world_is_refused_not_taken(tmp_path: Path) -> None:
    worlds = tmp_path / "worlds"
    strategy_dir(worlds, "60", "push").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="holds no world"):
        ensure_strategy_worlds(worlds, "60", ["push"], WORLD, None, print)
