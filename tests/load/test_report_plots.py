"""Every plot of the report can be read on its own: each panel has both axes labelled, a unit on
its value axis, and a legend naming what its colours are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from load import report
from load.capacity import Assumptions, capacity_table

STRATEGIES = ("push", "pull", "hybrid")
UNITS = ("(ms)", "(%)", "(MB", "per post", "/s", "USD")


def _runs(figures: Any) -> dict[str, dict[str, Any]]:
    return {s: {"figures": figures} for s in STRATEGIES}


RETRIEVAL = [
    {"target": t, "following": f, "p50": 1.0, "p95": 2.0, "p99": 3.0}
    for t, f in ((10, 10), (100, 100), (500, 500), ("largest", 500))
]
CONSISTENCY = {"checkpoints_s": [0.1, 0.5, 1.0, 5.0], "visible_fraction": [0.5, 0.8, 0.9, 1.0]}
STORAGE = {
    "tables": {"timelines": {"items": 10, "bytes": 4096}, "posts": {"items": 2, "bytes": 1024}},
    "write_amplification": 5.0,
}
THROUGHPUT = [
    {"api_processes": n, "processor_processes": n, "posts": {"per_s": 10.0}, "reads": {"per_s": 20.0}}
    for n in (1, 2)
]


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    kept: list[Any] = []

    def save(fig: Any, path: Path) -> str:
        fig.canvas.draw()  # tick labels are only made on drawing
        kept.append(fig)
        return path.name

    monkeypatch.setattr(report, "_save", save)
    return kept


def test_every_plot_has_labelled_axes_units_and_a_legend(figures: list[Any], tmp_path: Path) -> None:
    report.plot_retrieval("5k", _runs(RETRIEVAL), tmp_path)
    report.plot_consistency("5k", _runs(CONSISTENCY), tmp_path)
    report.plot_storage("5k", _runs(STORAGE), tmp_path)
    report.plot_throughput("5k", _runs(THROUGHPUT), tmp_path)
    report.plot_capacity(capacity_table(Assumptions()), tmp_path)
    assert len(figures) == 5
    for fig in figures:
        title = fig.axes[0].get_title() or fig.get_suptitle()
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert legends, f"{title}: no legend"
        assert all(t.get_text() for legend in legends for t in legend.get_texts()), title
        for ax in fig.axes:
            assert ax.get_xlabel(), f"{title}: an x axis without a label"
            shared = ax.get_ylabel() or fig.axes[0].get_ylabel()  # panels sharing the first's y axis
            assert any(unit in shared for unit in UNITS), f"{title}: y axis {shared!r} has no unit"
            assert all(t.get_text() for t in ax.get_xticklabels()), f"{title}: unnamed x ticks"


def test_consistency_ticks_are_the_checkpoints(figures: list[Any], tmp_path: Path) -> None:
    report.plot_consistency("5k", _runs(CONSISTENCY), tmp_path)
    ticks = [t.get_text() for t in figures[0].axes[0].get_xticklabels()]
    assert ticks == ["100 ms", "500 ms", "1 s", "5 s"]
