"""`fanline bench log` runs end to end and ends with one JSON object (no speed is asserted)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from fanline.cli import main


def test_bench_log_prints_every_figure_and_json_last() -> None:
    result = CliRunner().invoke(main, ["bench", "log", "--seconds", "0.5", "--consume-events", "2000"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.splitlines()[-1])
    for key in ("append_eps", "append_ratio", "consume_eps", "kinesis_append_ratio"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert "SQLiteLog.append:" in result.output
