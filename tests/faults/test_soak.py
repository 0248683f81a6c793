"""`fanline soak`: a short run against its own `fanline up` reports zero errors and every figure; a
run against nothing counts its failures and exits 1 (an error cannot pass unseen)."""

from __future__ import annotations

import json
import subprocess
import sys

from fanline.emulators import free_port


def _soak(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from fanline.cli import main; main()", "soak", *args],
                          capture_output=True, text=True, timeout=240)


def test_a_short_soak_against_its_own_fanline_up_has_no_errors_and_reports_every_figure() -> None:
    done = _soak("--minutes", "0.1", "--rate", "25")
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["errors"] == 0
    assert figures["requests"] >= 120
    assert figures["p99_ms"] > 0 and figures["baseline_healthz_p99_ms"] > 0
    assert figures["visible_p99_ms"] > 0  # posts were read back with their consistency tokens
    assert figures["rss_start_mb"] > 0 and figures["rss_end_mb"] > 0
    assert figures["lag_end_records"] is not None


def test_a_soak_against_nothing_counts_its_errors_and_fails() -> None:
    done = _soak("--minutes", "0.05", "--rate", "10", "--url", f"http://127.0.0.1:{free_port()}",
                 "--token", "x")
    assert done.returncode == 1
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["errors"] >= figures["requests"] > 0
