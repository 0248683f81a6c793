"""Limits: body size, batch size, post length, page size and the request rate per token.

Each limit is probed at its edge through the real app: the largest accepted input passes, one more
is refused with a clear 4xx and appends nothing. The rate limit is a token bucket per bearer token
(api.ratelimit): unit tests on a fake clock, then the app's 429 with Retry-After.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import Tokens
from api.bodies import MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES
from api.ratelimit import RateLimitMiddleware, TokenBuckets
from api.read import MAX_LIMIT
from api.write import MAX_BATCH_EVENTS, MAX_POST_CHARS
from tests.api.conftest import SECRET, Api, running_api


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_s=2, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token comes back every 1/2 s
    assert buckets.take("b") == 0.0  # another key has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 60  # a long pause refills to the burst, never beyond
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_the_table_of_buckets_stays_bounded_and_forgets_idle_keys_first() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_s=1, burst=2, clock=clock, max_keys=10)
    for _ in range(3):
        buckets.take("busy")  # empty: must be kept
    for n in range(20):
        buckets.take(f"forged-{n}")
        clock.now += 0.001
    assert len(buckets) <= 10
    assert buckets.take("busy") > 0


def test_a_bad_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="per_s"):
        TokenBuckets(per_s=0, burst=1)


async def test_the_middleware_answers_429_with_retry_after_per_token() -> None:
    clock = Clock()

    async def ok(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    app = Starlette(routes=[Route("/v1/x", ok), Route("/healthz", ok)])
    limited = RateLimitMiddleware(app, per_s=0.25, burst=1, clock=clock)
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        a, b = {"Authorization": "Bearer a"}, {"Authorization": "Bearer b"}
        assert (await client.get("/v1/x", headers=a)).status_code == 200
        refused = await client.get("/v1/x", headers=a)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "4"
        assert refused.json()["error"]["code"] == "rate_limited"
        assert (await client.get("/v1/x", headers=b)).status_code == 200
        assert (await client.get("/v1/x")).status_code == 200  # no token: keyed by the client address
        assert (await client.get("/healthz", headers=a)).status_code == 200  # probes are not limited
        clock.now += 4
        assert (await client.get("/v1/x", headers=a)).status_code == 200


@pytest.fixture
async def limited_api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path, rate_limit_per_s=1) as api:
        yield api


async def test_the_app_limits_each_token_and_appends_nothing_when_refused(limited_api: Api) -> None:
    api = limited_api
    headers = api.auth("u1")
    answers = [await api.client.post("/v1/posts", json={"body": f"p{n}"}, headers=headers) for n in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]  # 1/s, bursts of 2
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert len(api.log.appended) == 2
    other = await api.client.post("/v1/posts", json={"body": "mine"}, headers=api.auth("u2"))
    assert other.status_code == 202
    document = (await api.client.get("/openapi.json")).json()
    assert "429" in document["paths"]["/v1/posts"]["post"]["responses"]


def test_the_rate_is_a_setting() -> None:
    from fanline.settings import Settings

    assert Settings.load(environ={"FANLINE_RATE_LIMIT_PER_S": "7"}).rate_limit_per_s == 7
    assert Settings.load(environ={}).rate_limit_per_s > 0  # on by default


# --- the size limits, each at its edge -----------------------------------------------------------


async def post(api: Api, path: str, raw: bytes, scope: str = "user") -> httpx.Response:
    headers = {"Authorization": f"Bearer {Tokens(SECRET).issue('u1', scope)}",  # type: ignore[arg-type]
               "Content-Type": "application/json"}
    return await api.client.post(path, content=raw, headers=headers)


async def test_post_length_edge(api: Api) -> None:
    longest = await post(api, "/v1/posts", json.dumps({"body": "é" * MAX_POST_CHARS}).encode())
    assert longest.status_code == 202
    too_long = await post(api, "/v1/posts", json.dumps({"body": "é" * (MAX_POST_CHARS + 1)}).encode())
    assert too_long.status_code == 400
    assert "body: 1 to 500" in too_long.json()["error"]["message"]
    assert len(api.log.appended) == 1


async def test_body_size_edge_even_without_a_content_length(api: Api) -> None:
    padding = b" " * (MAX_BODY_BYTES - len(b'{"body": "hi"}'))
    assert (await post(api, "/v1/posts", b'{"body": "hi"}' + padding)).status_code == 202
    too_big = await post(api, "/v1/posts", b'{"body": "hi"}' + padding + b" ")
    assert too_big.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # streamed: no Content-Length to trust
        yield b'{"body": "hi"'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b" " * 1024
        yield b"}"

    headers = {"Authorization": f"Bearer {Tokens(SECRET).issue('u1')}"}
    streamed = await api.client.post("/v1/posts", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert len(api.log.appended) == 1


def _batch(count: int) -> bytes:
    events = [{"type": "UserRegistered", "data": {"user_id": f"b{n}", "handle": f"bee_{n}"}}
              for n in range(count)]
    return json.dumps({"events": events}).encode()


async def test_batch_size_edge(api: Api) -> None:
    assert (await post(api, "/v1/events", _batch(MAX_BATCH_EVENTS), "producer")).status_code == 202
    too_many = await post(api, "/v1/events", _batch(MAX_BATCH_EVENTS + 1), "producer")
    assert too_many.status_code == 400
    assert "$.events" in too_many.json()["error"]["message"]
    too_big = await post(api, "/v1/events", b'{"events": []' + b" " * MAX_BATCH_BODY_BYTES + b"}", "producer")
    assert too_big.status_code == 413
    assert len(api.log.appended) == MAX_BATCH_EVENTS


@pytest.mark.parametrize("path", ["/v1/users/u1/timeline", "/v1/users/u1/posts", "/v1/users/u1/followers",
                                  "/v1/users/u1/following"])
async def test_page_size_edge(api: Api, path: str) -> None:
    headers = api.auth("u1")
    largest = await api.client.get(path, params={"limit": MAX_LIMIT}, headers=headers)
    assert largest.status_code in (200, 404)  # u1 is unknown to the posts/followers routes: not a 400
    for bad in (MAX_LIMIT + 1, 0, -1, "ten"):
        refused = await api.client.get(path, params={"limit": bad}, headers=headers)
        assert refused.status_code == 400, (bad, refused.text)
        assert "limit" in refused.json()["error"]["message"]
