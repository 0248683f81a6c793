"""The mixed workload: 80 % timeline reads, 20 % posts, by users drawn from the world.

Each simulated user is one world user (`user_id(i)`, i drawn uniformly from the first
FANLINE_LOAD_USERS) with its own user-scope token, minted with the deployment's secret
(FANLINE_SECRET, or the one in FANLINE_DATA_DIR). A read counts as a success only when the
answer is 200 and the page is well formed and non-empty: every world user follows someone who
posted, so an empty page is a failure, not a fast read. A post succeeds on 202 with a post_id.

    FANLINE_DATA_DIR=/tmp/w5k FANLINE_LOAD_USERS=5000 \\
        locust -f load/locustfile.py --headless --users 50 --spawn-rate 10 --run-time 60s \\
        --host http://127.0.0.1:8080 --only-summary
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task

from api.auth import Tokens
from fanline.settings import Settings
from load.pages import page_problem
from load.world import user_id

PAGE = 50
_WORDS = ("load", "test", "timeline", "fan", "out", "hello", "again", "steady", "state", "posting")


class _Config:
    def __init__(self) -> None:
        self.users = int(os.environ.get("FANLINE_LOAD_USERS", "300"))
        self.tokens = Tokens(Settings.load().signing_secret())


_config: _Config | None = None


def config() -> _Config:
    global _config
    if _config is None:
        _config = _Config()
    return _config


class TimelineUser(HttpUser):
    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        cfg = config()
        self.user_id = user_id(random.randrange(cfg.users))
        self.headers = {"Authorization": f"Bearer {cfg.tokens.issue(self.user_id, 'user')}"}

    @task(4)
    def read_timeline(self) -> None:
        url = f"/v1/users/{self.user_id}/timeline?limit={PAGE}"
        with self.client.get(url, headers=self.headers, name="timeline", catch_response=True) as answer:
            try:
                body = answer.json()
            except ValueError:
                body = None
            problem = page_problem(answer.status_code, body)
            if problem is None:
                answer.success()
            else:
                answer.failure(problem)

    @task(1)
    def post(self) -> None:
        body = {"body": " ".join(random.choices(_WORDS, k=6))}
        with self.client.post("/v1/posts", json=body, headers=self.headers, name="post",
                              catch_response=True) as answer:
            try:
                ok = answer.status_code == 202 and "post_id" in answer.json()
            except (ValueError, TypeError):
                ok = False
            if ok:
                answer.success()
            else:
                answer.failure(f"status {answer.status_code}")
