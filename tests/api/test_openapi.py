"""The OpenAPI document: valid OpenAPI 3.1, every route of API.md in it, the app's real answers
matching the documented schemas, and the offline docs page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.app import create_app
from api.auth import Tokens
from api.openapi import UndocumentedRoute, openapi_document
from projections.memory_accounts import MemoryAccounts
from projections.memory_store import MemoryStore
from streams.sqlite_log import SQLiteLog
from tests.api.read_world import FOLLOWS, USERS, Feeder, follow, post, register

SECRET = "a-test-secret-long-enough-for-hs256-keys"
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)

# Every route of /work/shared/API.md, as (method, path template).
API_MD_ROUTES = {
    ("post", "/v1/auth/signup"), ("post", "/v1/auth/login"),
    ("post", "/v1/posts"), ("delete", "/v1/posts/{post_id}"),
    ("post", "/v1/follows"), ("delete", "/v1/follows/{followee_id}"), ("post", "/v1/events"),
    ("get", "/v1/users/{user_id}/timeline"), ("get", "/v1/users/{user_id}/posts"),
    ("get", "/v1/users/{user_id}"), ("get", "/v1/users/{user_id}/followers"),
    ("get", "/v1/users/{user_id}/following"), ("get", "/v1/users/{user_id}/suggestions"),
    ("get", "/v1/users/{a}/mutuals/{b}"),
    ("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"), ("get", "/openapi.json"),
}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Starlette]:
    log = SQLiteLog(tmp_path / "log.db", shard_count=2)
    store = MemoryStore()
    app = create_app(log, store, MemoryAccounts(), secret=SECRET, hasher=CHEAP_HASHER, linger_s=0.0)
    yield app
    await app.state.batcher.close()
    await log.close()


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def _document(app: Starlette) -> dict[str, Any]:
    async with _client(app) as client:
        answer = await client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    document: dict[str, Any] = answer.json()
    return document


async def test_the_document_is_valid_openapi_31(app: Starlette) -> None:
    document = await _document(app)
    assert document["openapi"] == "3.1.0"
    validate(document)


async def test_every_route_of_api_md_is_documented(app: Starlette) -> None:
    document = await _document(app)
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert documented >= API_MD_ROUTES, API_MD_ROUTES - documented
    # Every documented operation names its answers, and every route that needs a token says so.
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            if path.startswith("/v1/") and "/auth/" not in path and method != "get":
                assert op["security"] == [{"bearer": []}], (method, path)
    assert document["paths"]["/v1/users/{user_id}/timeline"]["get"]["security"] == [{"bearer": []}]
    timeline = document["paths"]["/v1/users/{user_id}/timeline"]["get"]
    timeline_params = {p["name"] for p in timeline["parameters"]}
    assert timeline_params == {"user_id", "limit", "cursor", "consistent_after"}


def test_an_undocumented_route_is_an_error() -> None:
    async def hidden(request: Request) -> Response:
        return Response()

    with pytest.raises(UndocumentedRoute, match="GET /v1/secret"):
        openapi_document([Route("/v1/secret", hidden, methods=["GET"])])


def _check(document: dict[str, Any], method: str, path: str, answer: httpx.Response) -> None:
    """The answer's status is documented for the operation and its body matches the schema."""
    op = document["paths"][path][method]
    documented = op["responses"].get(str(answer.status_code))
    assert documented is not None, f"{method} {path} answered {answer.status_code}, not documented"
    schema = documented.get("content", {}).get("application/json", {}).get("schema")
    if schema is not None:
        validator = Draft202012Validator({**schema, "components": document["components"]})
        validator.validate(answer.json())


async def test_real_answers_match_their_documented_schemas(app: Starlette) -> None:
    document = await _document(app)
    producer = {"Authorization": f"Bearer {Tokens(SECRET).issue('loader', 'producer')}"}
    async with _client(app) as c:
        signup = await c.post("/v1/auth/signup", json={"handle": "ann_1", "password": "long enough"})
        _check(document, "post", "/v1/auth/signup", signup)
        ann = signup.json()["user_id"]
        me = {"Authorization": f"Bearer {signup.json()['token']}"}
        _check(document, "post", "/v1/auth/signup",
               await c.post("/v1/auth/signup", json={"handle": "ann_1", "password": "long enough"}))
        _check(document, "post", "/v1/auth/login",
               await c.post("/v1/auth/login", json={"handle": "ann_1", "password": "long enough"}))
        _check(document, "post", "/v1/auth/login",
               await c.post("/v1/auth/login", json={"handle": "ann_1", "password": "wrong password"}))
        post = await c.post("/v1/posts", json={"body": "hello"}, headers=me)
        _check(document, "post", "/v1/posts", post)
        _check(document, "post", "/v1/posts", await c.post("/v1/posts", json={"body": 1}, headers=me))
        _check(document, "post", "/v1/posts", await c.post("/v1/posts", json={"body": "x"}))
        _check(document, "post", "/v1/follows",
               await c.post("/v1/follows", json={"followee_id": ann}, headers=me))
        events = {"events": [{"type": "UserRegistered",
                              "data": {"user_id": "bob", "handle": "bob", "display_name": "Bob"}}]}
        _check(document, "post", "/v1/events", await c.post("/v1/events", json=events, headers=producer))
        _check(document, "post", "/v1/events", await c.post("/v1/events", json=events, headers=me))
        _check(document, "delete", "/v1/posts/{post_id}", await c.delete("/v1/posts/nope", headers=me))
        _check(document, "get", "/v1/users/{user_id}/timeline",
               await c.get(f"/v1/users/{ann}/timeline", headers=me))
        _check(document, "get", "/v1/users/{user_id}/timeline",
               await c.get(f"/v1/users/{ann}/timeline?limit=0", headers=me))
        _check(document, "get", "/v1/users/{user_id}/timeline",
               await c.get("/v1/users/someone/timeline", headers=me))
        _check(document, "get", "/v1/users/{user_id}/posts", await c.get("/v1/users/nobody/posts"))
        _check(document, "get", "/v1/users/{user_id}", await c.get("/v1/users/nobody"))
        _check(document, "get", "/v1/users/{user_id}/followers", await c.get("/v1/users/nobody/followers"))
        _check(document, "get", "/healthz", await c.get("/healthz"))
        _check(document, "get", "/readyz", await c.get("/readyz"))
        _check(document, "get", "/metrics", await c.get("/metrics"))


async def test_read_answers_match_on_a_populated_store(tmp_path: Path) -> None:
    """Profiles, pages, suggestions and mutuals of real users, against their schemas."""
    log = SQLiteLog(tmp_path / "log.db", shard_count=1)
    store = MemoryStore()
    feed = Feeder(store)
    await feed(*(register(u, feed.next_ts()) for u in USERS))
    await feed(*(follow(a, b, feed.next_ts()) for a, b in FOLLOWS))
    await feed(*(post("bob", n, feed.next_ts()) for n in range(3)))
    app = create_app(log, store, MemoryAccounts(), secret=SECRET, hasher=CHEAP_HASHER)
    document = await _document(app)
    me = {"Authorization": f"Bearer {Tokens(SECRET).issue('ann')}"}
    async with _client(app) as c:
        timeline = await c.get("/v1/users/ann/timeline?limit=2", headers=me)
        assert len(timeline.json()["items"]) == 2
        _check(document, "get", "/v1/users/{user_id}/timeline", timeline)
        _check(document, "get", "/v1/users/{user_id}/posts", await c.get("/v1/users/bob/posts"))
        _check(document, "get", "/v1/users/{user_id}", await c.get("/v1/users/bob"))
        _check(document, "get", "/v1/users/{user_id}/followers", await c.get("/v1/users/eve/followers"))
        following = await c.get("/v1/users/bob/following?limit=1")
        _check(document, "get", "/v1/users/{user_id}/following", following)
        suggestions = await c.get("/v1/users/ann/suggestions")
        assert suggestions.json()["items"]
        _check(document, "get", "/v1/users/{user_id}/suggestions", suggestions)
        _check(document, "get", "/v1/users/{a}/mutuals/{b}", await c.get("/v1/users/bob/mutuals/cat"))
    await app.state.batcher.close()
    await log.close()


async def test_docs_page_lists_every_route_and_works_offline(app: Starlette) -> None:
    document = await _document(app)
    async with _client(app) as client:
        page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for path, ops in document["paths"].items():
        for method in ops:
            shown = rf"{method.upper()}</span> <code>{re.escape(path)}</code>"
            assert re.search(shown, page.text), (method, path)
    # Nothing fetched from elsewhere: no scripts, no external stylesheets or links.
    assert "<script" not in page.text
    assert not re.search(r"(src|href)=['\"]?https?:", page.text)
