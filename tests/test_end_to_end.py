"""End to end through real HTTP: `fanline up --no-world` as a child process (uvicorn on 127.0.0.1 on a
free port, the processors in its own child), on SQLite and on the emulators (kinesalite, dynalite).

One story per backend: sign up, follow, post, read timelines with consistent_after (read your
writes), a celebrity pulled at read time (FANLINE_CELEBRITY_THRESHOLD=2), unfollow, delete, and
paging while posts arrive (no skips, no repeats). Every read that passes a consistency token
must come back fresh (no X-Fanline-Stale). The server is stopped by its pid and must exit 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fanline import emulators
from tests import up_server

SECRET = "end-to-end-secret-long-enough-for-hs256"


@pytest.fixture
def sqlite_env() -> dict[str, str]:
    return {"FANLINE_BACKEND": "sqlite"}


@pytest.fixture
def aws_env(kinesalite: emulators.Emulator, dynalite: emulators.Emulator) -> dict[str, str]:
    return up_server.aws_env(kinesalite, dynalite, "e2e")


@pytest.fixture
def up(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """`fanline up` with the backend of the test's env fixture; yields the base URL."""
    backend: dict[str, str] = request.getfixturevalue(request.param)
    settings = {**backend, "FANLINE_SECRET": SECRET, "FANLINE_CELEBRITY_THRESHOLD": "2",
                "FANLINE_CONSISTENCY_WAIT_MS": "10000"}
    with up_server.running_up(tmp_path, settings) as base:
        yield base


class Person:
    def __init__(self, client: httpx.Client, handle: str) -> None:
        answer = client.post("/v1/auth/signup", json={"handle": handle, "password": "a good password"})
        assert answer.status_code == 201, answer.text
        self.client = client
        self.user_id: str = answer.json()["user_id"]
        self.auth = {"Authorization": f"Bearer {answer.json()['token']}"}
        self.token: str = answer.json()["consistency_token"]

    def write(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.client.request(method, path, json=body, headers=self.auth)
        assert answer.status_code == 202, answer.text
        reply: dict[str, Any] = answer.json()
        return reply

    def post(self, text: str) -> tuple[str, str]:
        reply = self.write("POST", "/v1/posts", {"body": text})
        return reply["post_id"], reply["consistency_token"]

    def follow(self, other: Person) -> str:
        token: str = self.write("POST", "/v1/follows", {"followee_id": other.user_id})["consistency_token"]
        return token

    def timeline(
        self, after: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        params = {"limit": str(limit)}
        if after is not None:
            params["consistent_after"] = after
        if cursor is not None:
            params["cursor"] = cursor
        answer = self.client.get(f"/v1/users/{self.user_id}/timeline", params=params, headers=self.auth)
        assert answer.status_code == 200, answer.text
        assert "x-fanline-stale" not in answer.headers, "a consistent_after read came back stale"
        page: dict[str, Any] = answer.json()
        return page

    def seen(self, after: str | None = None) -> list[str]:
        return [item["body"] for item in self.timeline(after)["items"]]


def _story(base: str) -> None:
    with httpx.Client(base_url=base, timeout=15.0) as client:
        ann, bob, cat, dan = (Person(client, h) for h in ("ann", "bob", "cat", "dan"))
        # Someone else's timeline is not ann's to read.
        assert client.get(f"/v1/users/{bob.user_id}/timeline", headers=ann.auth).status_code == 403

        # bob has one follower (pushed); cat gets three (>= 2: a celebrity, pulled at read time).
        ann.follow(bob)
        for fan in (ann, bob, dan):
            fan.follow(cat)
        _, bob_token = bob.post("bob: hello")
        _, cat_token = cat.post("cat: first!")
        assert ann.seen(after=bob_token)[-1] == "bob: hello"
        assert ann.seen(after=cat_token) == ["cat: first!", "bob: hello"]
        profile = client.get(f"/v1/users/{cat.user_id}").json()
        assert (profile["followers"], profile["celebrity"]) == (3, True)
        assert client.get(f"/v1/users/{bob.user_id}").json()["celebrity"] is False
        assert client.get(f"/v1/users/{ann.user_id}").json()["following"] == 2

        # Read your writes: ann's own post is there on the very next read.
        _, mine = ann.post("ann: my own words")
        assert ann.seen(after=mine)[0] == "ann: my own words"

        # Unfollow: bob's posts leave ann's timeline; delete: cat's post leaves everyone's.
        unfollowed = ann.write("DELETE", f"/v1/follows/{bob.user_id}")["consistency_token"]
        assert "bob: hello" not in ann.seen(after=unfollowed)
        cat_post = client.get(f"/v1/users/{cat.user_id}/posts").json()["items"][0]["post_id"]
        deleted = cat.write("DELETE", f"/v1/posts/{cat_post}")["consistency_token"]
        assert "cat: first!" not in ann.seen(after=deleted)
        assert "cat: first!" not in dan.seen(after=deleted)
        assert client.get(f"/v1/users/{cat.user_id}/posts").json()["items"] == []

        # Paging while posts arrive: the pages hold exactly the posts there at the first page.
        dan.follow(bob)
        last = ""
        for n in range(7):
            _, last = bob.post(f"bob: {n}")
        expected = [f"bob: {n}" for n in reversed(range(7))] + ["bob: hello"]
        shown: list[str] = []
        page = dan.timeline(after=last, limit=3)
        while True:
            shown.extend(item["body"] for item in page["items"])
            bob.post(f"bob: arriving while dan pages ({len(shown)})")
            if page["next_cursor"] is None:
                break
            page = dan.timeline(limit=3, cursor=page["next_cursor"])
        assert shown == expected

        # The follow lists, suggestions and mutuals over the same projections.
        assert client.get(f"/v1/users/{cat.user_id}/followers").json()["items"] == sorted(
            [ann.user_id, bob.user_id, dan.user_id])
        mutuals = client.get(f"/v1/users/{dan.user_id}/mutuals/{ann.user_id}").json()["items"]
        assert mutuals == [cat.user_id]
        # ann follows cat and now dan, who follows bob: bob is suggested, once.
        ann.timeline(after=ann.follow(dan))
        suggestions = client.get(f"/v1/users/{ann.user_id}/suggestions").json()["items"]
        assert suggestions == [{"user_id": bob.user_id, "handle": "bob", "score": 1}]
        assert client.get("/metrics").text.count("fanline_http_request_duration_seconds_bucket") > 0


@pytest.mark.parametrize("up", ["sqlite_env"], indirect=True)
def test_end_to_end_on_sqlite(up: str) -> None:
    _story(up)


@pytest.mark.parametrize("up", ["aws_env"], indirect=True)
def test_end_to_end_on_the_emulators(up: str) -> None:
    _story(up)
