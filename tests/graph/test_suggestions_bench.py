"""The suggestions figures of `fanline bench read`, on a small world: built once, all answers equal."""

from __future__ import annotations

import json
from pathlib import Path

from fanline.benchmarks.read_world import build_world
from fanline.benchmarks.suggestions import figures_dict, measure
from load.world import user_id


async def test_suggestions_bench_on_a_small_world(tmp_path: Path) -> None:
    await build_world(tmp_path, 80)
    readers = [user_id(i) for i in range(0, 80, 3)]
    figures = await measure(tmp_path, readers)
    assert figures.readers == len(readers)
    assert figures.mismatches == 0
    assert figures.empty < len(readers)  # compared answers are mostly not empty
    assert 0 < figures.graph_p50_ms <= figures.graph_p99_ms
    assert 0 < figures.traversal_p50_ms <= figures.traversal_p99_ms
    assert 0 < figures.store_p50_ms <= figures.store_p99_ms
    built = json.loads((tmp_path / "graph.json").read_text())["build_s"]
    again = await measure(tmp_path, readers[:3])  # the graph is reused, not built again
    assert again.graph_build_s == built == figures.graph_build_s
    assert set(figures_dict(figures)) >= {"suggestions_graph_p50_ms", "suggestions_graph_p99_ms"}
