"""The locustfile against a real `fanline up` (its small world), headless for a few seconds."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from api.auth import Tokens
from fanline.settings import Settings
from load.pages import page_problem
from load.server import Server
from load.world import user_id

USERS = 30
LOCUSTFILE = Path(__file__).parents[2] / "load" / "locustfile.py"


def test_page_problem_refuses_empty_and_malformed_pages() -> None:
    item = {"post_id": "p1", "author_id": "a", "author_handle": "h", "body": "b", "created_at": 5}
    older = {**item, "post_id": "p0", "created_at": 4}
    assert page_problem(200, {"items": [item, older], "next_cursor": None}) is None
    assert page_problem(404, {"error": {}}) == "status 404"
    assert page_problem(200, {"items": [], "next_cursor": None}) == "empty timeline"
    assert page_problem(200, {"items": [{"post_id": "p1"}], "next_cursor": None}) == "malformed item"
    assert page_problem(200, {"items": [older, item], "next_cursor": None}) is not None
    assert page_problem(200, ["not", "a", "page"]) == "not a page object"


def _wait_for_timelines(url: str, tokens: Tokens, timeout_s: float) -> None:
    """Until every world user's timeline is non-empty: the processors have folded the world."""
    deadline = time.monotonic() + timeout_s
    pending = [user_id(i) for i in range(USERS)]
    while pending and time.monotonic() < deadline:
        auth = {"Authorization": f"Bearer {tokens.issue(pending[0])}"}
        page = httpx.get(f"{url}/v1/users/{pending[0]}/timeline", headers=auth, timeout=5)
        if page.status_code == 200 and page.json()["items"]:
            pending.pop(0)
        else:
            time.sleep(0.2)
    assert not pending, f"timelines still empty: {pending[:5]}"


def test_a_short_headless_run_reads_and_posts_without_failures(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Server(data, world=USERS, extra_env={"FANLINE_SECRET": ""}) as server:
        tokens = Tokens(Settings.load({"data_dir": data}, environ={}).signing_secret())
        _wait_for_timelines(server.url, tokens, timeout_s=40)
        env = {**os.environ, "FANLINE_DATA_DIR": str(data), "FANLINE_SECRET": "",
               "FANLINE_LOAD_USERS": str(USERS)}
        run = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--users", "4",
             "--spawn-rate", "4", "--run-time", "3s", "--stop-timeout", "2", "--host", server.url,
             "--csv", str(tmp_path / "run"), "--only-summary"],
            env=env, capture_output=True, text=True, timeout=40,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    with (tmp_path / "run_stats.csv").open() as file:
        rows = {row["Name"]: row for row in csv.DictReader(file)}
    assert int(rows["timeline"]["Request Count"]) > 0 and int(rows["post"]["Request Count"]) > 0
    assert rows["Aggregated"]["Failure Count"] == "0"
    # Roughly 80/20: reads outnumber posts.
    assert int(rows["timeline"]["Request Count"]) > int(rows["post"]["Request Count"])
