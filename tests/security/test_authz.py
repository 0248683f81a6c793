"""The authorization matrix: every documented route, asked by the user it concerns, by a user token
for someone else, by a producer token, with no token, an expired token and a tampered token.

Writes act for alice (in the path or as actor_id); someone else is bob. Reads of a timeline are
alice's own or a producer's. Public routes (profiles, follow lists, posts, health, docs, sign-up,
login) do not read the Authorization header at all: any token, even a bad one, changes nothing.
A new route without a row here fails `test_every_documented_route_is_in_the_matrix`.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx
import jwt
import pytest

from api.auth import Tokens
from api.openapi import OPERATIONS
from projections.records import Post, PutPost, PutUser, User
from tests.api.conftest import SECRET, Api

WHO = ("self", "other", "producer", "none", "expired", "tampered")
_unique = itertools.count()


def _token(who: str) -> dict[str, str]:
    tokens = Tokens(SECRET)
    if who == "none":
        return {}
    if who == "self":
        token = tokens.issue("alice")
    elif who == "other":
        token = tokens.issue("bob")
    elif who == "producer":
        token = tokens.issue("loader", "producer")
    elif who == "expired":
        token = tokens.issue("alice", ttl_s=-10)
    else:  # alice's token with its claims swapped for a producer's, the signature kept
        header, _, signature = tokens.issue("alice").split(".")
        claims = jwt.encode({"sub": "alice", "scope": "producer", "exp": int(time.time()) + 600}, "x" * 32)
        token = f"{header}.{claims.split('.')[1]}.{signature}"
    return {"Authorization": f"Bearer {token}"}


def _acting(who: str, body: dict[str, Any]) -> dict[str, Any]:
    """A write for alice: a producer or someone else names her; she herself need not."""
    return {**body, "actor_id": "alice"} if who in ("other", "producer") else body


AUTH = {"none": 401, "expired": 401, "tampered": 401}
WRITE = {"self": 202, "other": 403, "producer": 202, **AUTH}
PUBLIC = dict.fromkeys(WHO, 200)


def _event() -> dict[str, Any]:
    n = next(_unique)
    return {"events": [{"type": "UserRegistered", "data": {"user_id": f"z{n}", "handle": f"zed_{n}"}}]}


LOGIN = {"handle": "alice_h", "password": "alice's pw!"}

# (method, route template) -> (path, body maker, expected status per caller)
MATRIX: dict[tuple[str, str], tuple[str, Any, dict[str, int]]] = {
    ("POST", "/v1/auth/signup"): ("/v1/auth/signup",
                                  lambda who: {"handle": f"new_{next(_unique)}", "password": "long enough"},
                                  dict.fromkeys(WHO, 201)),
    ("POST", "/v1/auth/login"): ("/v1/auth/login", lambda who: LOGIN, PUBLIC),
    ("POST", "/v1/posts"): ("/v1/posts", lambda who: _acting(who, {"body": "hello"}), WRITE),
    ("DELETE", "/v1/posts/{post_id}"): ("/v1/posts/p-alice", lambda who: _acting(who, {}), WRITE),
    ("POST", "/v1/follows"): ("/v1/follows", lambda who: _acting(who, {"followee_id": "carol"}), WRITE),
    ("DELETE", "/v1/follows/{followee_id}"): ("/v1/follows/carol", lambda who: _acting(who, {}), WRITE),
    ("POST", "/v1/events"): ("/v1/events", lambda who: _event(),
                             {"self": 403, "other": 403, "producer": 202, **AUTH}),
    ("GET", "/v1/users/{user_id}/timeline"): ("/v1/users/alice/timeline", None,
                                              {"self": 200, "other": 403, "producer": 200, **AUTH}),
    ("GET", "/v1/users/{user_id}/posts"): ("/v1/users/alice/posts", None, PUBLIC),
    ("GET", "/v1/users/{user_id}"): ("/v1/users/alice", None, PUBLIC),
    ("GET", "/v1/users/{user_id}/followers"): ("/v1/users/alice/followers", None, PUBLIC),
    ("GET", "/v1/users/{user_id}/following"): ("/v1/users/alice/following", None, PUBLIC),
    ("GET", "/v1/users/{user_id}/suggestions"): ("/v1/users/alice/suggestions", None, PUBLIC),
    ("GET", "/v1/users/{a}/mutuals/{b}"): ("/v1/users/alice/mutuals/bob", None, PUBLIC),
    ("GET", "/v1/pipeline"): ("/v1/pipeline", None, PUBLIC),
    ("GET", "/healthz"): ("/healthz", None, PUBLIC),
    ("GET", "/readyz"): ("/readyz", None, PUBLIC),
    ("GET", "/metrics"): ("/metrics", None, PUBLIC),
    ("GET", "/openapi.json"): ("/openapi.json", None, PUBLIC),
    ("GET", "/docs"): ("/docs", None, PUBLIC),
}


def test_every_documented_route_is_in_the_matrix() -> None:
    assert set(OPERATIONS) == set(MATRIX)


@pytest.fixture
async def world(api: Api) -> Api:
    await api.store.apply(
        [PutUser(User(u, f"{u}_h", u.title())) for u in ("alice", "bob", "carol")]
        + [PutPost(Post("p-alice", "alice", "mine", 1))], "s0", "1")
    signup = await api.client.post("/v1/auth/signup", json=LOGIN)
    assert signup.status_code == 201
    return api


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
async def test_each_caller_gets_the_right_answer(world: Api, route: tuple[str, str]) -> None:
    path, body, expected = MATRIX[route]
    got: dict[str, int] = {}
    for who in WHO:
        before = len(world.log.appended)
        kwargs: dict[str, Any] = {"headers": _token(who)}
        if body is not None:
            kwargs["json"] = body(who)
        answer: httpx.Response = await world.client.request(route[0], path, **kwargs)
        got[who] = answer.status_code
        if answer.status_code in (401, 403):
            assert len(world.log.appended) == before, (who, "a refused request appended")
            assert answer.json()["error"]["message"]
        if answer.status_code == 401:
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert got == expected
