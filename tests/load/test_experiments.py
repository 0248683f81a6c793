"""The experiments end to end on a small world, then the report over their results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fanline.cli import main
from fanline.commands.experiment import run
from load.capacity import Assumptions, model
from load.experiments import Options, percentiles, probe_events, readers_by_following, users_of
from load.tiers import TieredWorld


def test_scales_and_percentiles() -> None:
    assert users_of("5k") == 5000 and users_of("100k") == 100_000 and users_of("80") == 80
    with pytest.raises(ValueError, match="unknown scale"):
        users_of("huge")
    assert percentiles([float(v) for v in range(1, 101)]) == {"p50": 51.0, "p95": 96.0, "p99": 100.0}


def test_readers_are_the_nearest_real_users() -> None:
    world = TieredWorld(users=400, seed=2)
    counts = [len(row) for row in world.followees]
    buckets = dict(readers_by_following(world, 3))
    assert buckets[10] is None  # no one follows fewer than 50: probe readers are added
    assert buckets[100] is not None and all(abs(counts[i] - 100) <= 5 for i in buckets[100])
    assert buckets[None] is not None and max(counts[i] for i in buckets[None]) == max(counts)
    readers, events = probe_events(world, 10, 2)
    assert readers == ["probe-10-0", "probe-10-1"] and len(events) == 2 * 11
    assert probe_events(world, 10, 2) == (readers, events)


def test_capacity_model_orders_the_strategies() -> None:
    a = Assumptions()
    push, pull, hybrid = (model(1_000_000, s, a) for s in ("push", "pull", "hybrid"))
    assert push["peak_write_units_s"] > hybrid["peak_write_units_s"] > pull["peak_write_units_s"]
    assert pull["peak_read_units_s"] > hybrid["peak_read_units_s"] > push["peak_read_units_s"]
    assert push["kinesis_shards"] >= 1 and push["monthly_usd_total"] > 0


def test_all_experiments_and_the_report_on_a_small_world(tmp_path: Path) -> None:
    options = Options(
        worlds=tmp_path / "worlds",
        readers_per_bucket=1,
        reads_per_reader=3,
        probes=3,
        followers_per_probe=5,
        background_rps=5,
        throughput_s=1.0,
        concurrency=4,
    )
    out = tmp_path / "raw"
    results = run("all", "80", "hybrid", options, out)
    by_name = {r["experiment"]: r["figures"] for r in results}
    retrieval = by_name["retrieval"]
    assert [r["target"] for r in retrieval] == [10, 100, 500, "largest"]
    assert all(
        r["failures"] == 0 and r["reads"] == 3 and r["p50"] > 0 and r["page_bytes"] > 100 for r in retrieval
    )
    assert retrieval[0]["probe_readers"] and retrieval[0]["following"] == 10
    consistency = by_name["consistency"]
    assert consistency["visible_fraction"][-1] == 1.0  # every follower sees it within 5 s
    assert set(consistency["background"]) == {"ok"}  # good pages and accepted posts only
    assert all(
        a <= b
        for a, b in zip(consistency["visible_fraction"], consistency["visible_fraction"][1:], strict=False)
    )
    storage = by_name["storage"]
    assert storage["tables"]["timelines"]["items"] > 0 and storage["write_amplification"] > 1
    throughput = by_name["throughput"]
    assert [r["api_processes"] for r in throughput] == [1, 2]
    assert all(
        r["posts"]["good"] > 0 and r["reads"]["good"] > 0 and r["reads"]["failures"] == 0 for r in throughput
    )
    assert json.loads((out / "80" / "storage-hybrid.json").read_text())["figures"] == storage
    assert (out / "capacity.json").exists()

    report = tmp_path / "report"
    answer = CliRunner().invoke(main, ["report", "--results", str(out), "--out", str(report)])
    assert answer.exit_code == 0, answer.output
    readme = (report / "README.md").read_text()
    for png in (
        "retrieval-80.png",
        "consistency-80.png",
        "storage-80.png",
        "throughput-80.png",
        "capacity.png",
    ):
        assert f"]({png})" in readme and (report / png).read_bytes()[:4] == b"\x89PNG"
    assert "Celebrity threshold" in readme and "| hybrid |" in readme
