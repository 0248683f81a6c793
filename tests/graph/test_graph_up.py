"""`fanline up` with FANLINE_GRAPH=embedded, through real HTTP, on SQLite (the emulators:
test_graph_up_aws.py, with the same story).

The world `up` writes is folded by the graph processor (its leases: graph-leases.db, or the
DynamoDB table `<prefix>graph-leases` on dynalite); suggestions and mutuals over HTTP come to
equal a brute force over the world's events, then follow a follow made through the API. The
server is stopped by its pid and must exit 0.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.auth import Tokens
from fanline import emulators
from load.world import WorldSpec, user_id, world_events
from streams.events import UserFollowed
from tests import up_server
from tests.graph.test_graph_projection import brute_suggestions

SECRET = "graph-up-secret-long-enough-for-hs256"
USERS = 40
WAIT_S = 45.0


@pytest.fixture
def sqlite_env() -> dict[str, str]:
    return {"FANLINE_BACKEND": "sqlite"}


@pytest.fixture
def aws_env(kinesalite: emulators.Emulator, dynalite: emulators.Emulator) -> dict[str, str]:
    return up_server.aws_env(kinesalite, dynalite, "graph")


@pytest.fixture
def up(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    backend: dict[str, str] = request.getfixturevalue(request.param)
    settings = {**backend, "FANLINE_SECRET": SECRET, "FANLINE_GRAPH": "embedded"}
    with up_server.running_up(tmp_path, settings, world=USERS) as base:
        yield base
    # The graph's own leases: a file beside the embedded log, a DynamoDB table on the emulators.
    on_sqlite = backend["FANLINE_BACKEND"] == "sqlite"
    assert (tmp_path / "data" / "graph-leases.db").exists() == on_sqlite
    assert (tmp_path / "data" / "graph.db").exists()


def _until(check: Any, server: subprocess.Popen[bytes] | None = None, output: Path | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            pytest.fail(f"fanline up exited with {server.returncode}:\n{output and output.read_text()}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail("not reached in time")


@pytest.mark.parametrize("up", ["sqlite_env"], indirect=True)
def test_up_serves_suggestions_and_mutuals_from_the_graph(up: str) -> None:
    story(up)


def story(up: str) -> None:
    follows: dict[str, set[str]] = {user_id(i): set() for i in range(USERS)}
    for event in world_events(WorldSpec(users=USERS)):
        if isinstance(event, UserFollowed):
            follows[event.data.follower_id].add(event.data.followee_id)
    readers = [user_id(i) for i in range(0, USERS, 7)]

    def suggestions(u: str) -> list[tuple[str, int]] | None:
        answer = httpx.get(f"{up}/v1/users/{u}/suggestions?limit=5", timeout=5)
        if answer.status_code != 200:
            return None  # 404 until the user's registration is folded
        return [(item["user_id"], item["score"]) for item in answer.json()["items"]]

    _until(lambda: all(suggestions(u) == brute_suggestions(follows, u, 5) for u in readers))
    a, b = user_id(1), user_id(2)
    wanted = sorted(follows[a] & follows[b])
    assert httpx.get(f"{up}/v1/users/{a}/mutuals/{b}", timeout=5).json()["items"] == wanted

    # A follow through the API reaches the graph: b's new followee is a mutual of a and b.
    new = next(u for u in sorted(follows[a]) if u not in follows[b] and u != b)
    auth = {"Authorization": f"Bearer {Tokens(SECRET).issue(b, 'user')}"}
    followed = httpx.post(f"{up}/v1/follows", json={"followee_id": new}, headers=auth, timeout=5)
    assert followed.status_code == 202, followed.text
    _until(lambda: httpx.get(f"{up}/v1/users/{a}/mutuals/{b}", timeout=5).json()["items"]
           == sorted([*wanted, new]))
