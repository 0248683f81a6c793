"""The read API on MemoryStore through the ASGI transport: every read route, auth, pages, errors.

Also consistency tokens (the bounded wait of `consistent_after`) and health/readiness/metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware

from api import health
from api.auth import Scope, Tokens
from api.consistency import BadConsistencyToken, ConsistencyWaiter, decode_token, encode_token
from api.errors import ApiError, handle_api_error
from api.health import LatencyMiddleware, health_routes
from api.read import read_routes
from projections.memory_store import MemoryStore
from projections.records import PutUser, SortKey, TimelineEntry, User
from projections.store import StoreUnavailable
from projections.timeline import TimelineReader
from streams.log import LogUnavailable, Shard
from streams.sqlite_log import SQLiteLog
from tests.api.read_world import FOLLOWS, USERS, Feeder, follow, post, register

# --- consistency tokens ----------------------------------------------------------------------


def test_token_round_trip() -> None:
    token = encode_token("shardId-000000000003", "123456789012345678901234567890")
    decoded = decode_token(token)
    assert (decoded.shard_id, decoded.sequence) == ("shardId-000000000003", "123456789012345678901234567890")


@pytest.mark.parametrize("token", ["", "!!!", "bm9jb2xvbg", encode_token("shard", "12x"), "c2hhcmQ6"])
def test_bad_token_is_refused(token: str) -> None:
    with pytest.raises(BadConsistencyToken):
        decode_token(token)


async def test_waiter_answers_at_once_when_applied() -> None:
    store = MemoryStore()
    await store.apply([], "s-1", "100")
    waiter = ConsistencyWaiter(store, wait_ms=2000)
    started = time.monotonic()
    assert await waiter(encode_token("s-1", "99")) is False
    assert await waiter(encode_token("s-1", "100")) is False
    assert time.monotonic() - started < 0.1


async def test_waiter_gives_up_after_the_bound() -> None:
    store = MemoryStore()
    await store.apply([], "s-1", "100")
    waiter = ConsistencyWaiter(store, wait_ms=50)
    started = time.monotonic()
    # Compared as numbers, not strings: "1000" > "100" only numerically here, "99" < "100".
    assert await waiter(encode_token("s-1", "1000")) is True
    assert await waiter(encode_token("s-2", "1")) is True
    assert 0.1 <= time.monotonic() - started < 1.0


async def test_waiter_returns_once_the_processor_catches_up() -> None:
    store = MemoryStore()
    waiter = ConsistencyWaiter(store, wait_ms=2000)

    async def process_later() -> None:
        await asyncio.sleep(0.05)
        await store.apply([], "s-1", "7")

    task = asyncio.create_task(process_later())
    started = time.monotonic()
    assert await waiter(encode_token("s-1", "7")) is False
    assert 0.04 <= time.monotonic() - started < 0.5
    await task


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.applied_calls = 0

    async def applied(self) -> dict[str, str]:
        self.applied_calls += 1
        return await super().applied()


async def test_waiting_reads_share_their_looks_at_the_store() -> None:
    store = CountingStore()
    waiter = ConsistencyWaiter(store, wait_ms=100)
    token = encode_token("s-1", "5")
    started = time.monotonic()
    gave_up = await asyncio.gather(*(waiter(token) for _ in range(50)))
    elapsed = time.monotonic() - started
    assert gave_up == [True] * 50
    # One look per poll interval for all fifty, not fifty per interval.
    assert store.applied_calls <= elapsed / 0.005 + 5, store.applied_calls

    await store.apply([], "s-1", "5")
    await waiter(token)  # a fresh look sees the mark ...
    calls = store.applied_calls
    assert await waiter(encode_token("s-1", "4")) is False  # ... and older writes need no look at all
    assert store.applied_calls == calls


# --- health, readiness, metrics --------------------------------------------------------------


class DownStore(MemoryStore):
    async def ping(self) -> None:
        raise StoreUnavailable("database is locked")


def _health_app(log: SQLiteLog, store: MemoryStore) -> Starlette:
    return Starlette(
        routes=health_routes(log, store),
        middleware=[Middleware(LatencyMiddleware)],
        exception_handlers={ApiError: handle_api_error},
    )


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SQLiteLog]:
    log = SQLiteLog(tmp_path / "log.db", shard_count=2)
    yield log
    await log.close()


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_healthz_and_readyz(log: SQLiteLog) -> None:
    async with _client(_health_app(log, MemoryStore())) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text


async def test_readyz_503_names_the_store_when_it_does_not_answer(log: SQLiteLog) -> None:
    async with _client(_health_app(log, DownStore())) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "not_ready"
    assert "store" in ready.json()["error"]["message"]
    assert "database is locked" in ready.json()["error"]["message"]


class DownLog(SQLiteLog):
    async def shards(self) -> list[Shard]:
        raise LogUnavailable("stream is not active")


class HangingStore(MemoryStore):
    async def ping(self) -> None:
        await asyncio.sleep(60)


async def test_readyz_503_when_the_log_does_not_answer(tmp_path: Path) -> None:
    log = DownLog(tmp_path / "log.db", shard_count=1)
    async with _client(_health_app(log, MemoryStore())) as client:
        ready = await client.get("/readyz")
    await log.close()
    assert ready.status_code == 503
    assert "log: LogUnavailable: stream is not active" in ready.json()["error"]["message"]


async def test_readyz_503_when_the_store_hangs(log: SQLiteLog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "READY_TIMEOUT_S", 0.05)
    async with _client(_health_app(log, HangingStore())) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert "store: no answer within 0.05 s" in ready.json()["error"]["message"]


async def test_metrics_count_requests_by_route_template(log: SQLiteLog) -> None:
    store = MemoryStore()
    await store.apply([PutUser(User("u1", "ann", "Ann"))], "s", "1")
    async with _client(_health_app(log, store)) as client:
        for _ in range(3):
            await client.get("/healthz")
        await client.get("/nowhere")
        text = (await client.get("/metrics")).text
    assert "fanline_http_request_duration_seconds_bucket" in text
    assert 'method="GET",route="/healthz",status="200"' in text
    assert 'route="unmatched",status="404"' in text


# --- the read routes ---------------------------------------------------------------------------

SECRET = "test-secret-of-the-read-api-0123456789"
TOKENS = Tokens(SECRET)
def _read_app(store: MemoryStore, wait_ms: int = 2000) -> Starlette:
    timelines = TimelineReader(store, "hybrid")
    app = Starlette(
        routes=read_routes(store, timelines, ConsistencyWaiter(store, wait_ms)),
        middleware=[Middleware(LatencyMiddleware)],
        exception_handlers={ApiError: handle_api_error},
    )
    app.state.tokens = TOKENS
    return app


def _as(user_id: str, scope: Scope = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS.issue(user_id, scope)}"}


@pytest.fixture
async def world() -> tuple[MemoryStore, Feeder]:
    store = MemoryStore()
    feed = Feeder(store)
    await feed(*(register(u, feed.next_ts()) for u in USERS))
    await feed(*(follow(a, b, feed.next_ts()) for a, b in FOLLOWS))
    # Three posts each from bob, cat and eve (the celebrity: pulled at read time).
    await feed(*(post(a, n, feed.next_ts()) for n in range(3) for a in ("bob", "cat", "eve")))
    return store, feed


async def test_timeline_merges_pushed_and_celebrity_posts(world: tuple[MemoryStore, Feeder]) -> None:
    store, _ = world
    assert (await store.users(["eve"]))["eve"].celebrity
    async with _client(_read_app(store)) as client:
        answer = await client.get("/v1/users/ann/timeline", headers=_as("ann"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert "x-fanline-stale" not in answer.headers
    page = answer.json()
    ids = [i["post_id"] for i in page["items"]]
    # ann follows bob, cat and eve: all nine posts, newest first.
    assert ids == [f"{a}-{n}" for n in (2, 1, 0) for a in ("eve", "cat", "bob")]
    assert page["next_cursor"] is None
    first = page["items"][0]
    assert first == {"post_id": "eve-2", "author_id": "eve", "author_handle": "eve",
                     "body": "post 2 of eve", "created_at": first["created_at"]}


async def test_timeline_auth(world: tuple[MemoryStore, Feeder]) -> None:
    store, _ = world
    async with _client(_read_app(store)) as client:
        assert (await client.get("/v1/users/ann/timeline", headers=_as("bob"))).status_code == 403
        producer = await client.get("/v1/users/ann/timeline", headers=_as("loader", "producer"))
        assert producer.status_code == 200
        missing = await client.get("/v1/users/ann/timeline")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        bad = await client.get("/v1/users/ann/timeline", headers={"Authorization": "Bearer nonsense"})
        assert bad.status_code == 401
        other = Tokens("another secret, 32 bytes or longer.....").issue("ann")
        forged = await client.get("/v1/users/ann/timeline", headers={"Authorization": f"Bearer {other}"})
        assert forged.status_code == 401


async def test_timeline_pages_neither_skip_nor_repeat(world: tuple[MemoryStore, Feeder]) -> None:
    store, feed = world
    seen: list[str] = []
    async with _client(_read_app(store)) as client:
        url = "/v1/users/ann/timeline?limit=2"
        for n in range(10):
            page = (await client.get(url, headers=_as("ann"))).json()
            seen.extend(i["post_id"] for i in page["items"])
            # A new post arrives between pages: it is newer than the cursor, so not on later pages.
            await feed(post("bob", 100 + n, feed.next_ts()))
            if page["next_cursor"] is None:
                break
            url = f"/v1/users/ann/timeline?limit=2&cursor={page['next_cursor']}"
    assert seen == [f"{a}-{n}" for n in (2, 1, 0) for a in ("eve", "cat", "bob")]


@pytest.mark.parametrize(
    ("query", "name"),
    [("limit=0", "limit"), ("limit=201", "limit"), ("limit=x", "limit"), ("limit=", "limit"),
     ("limit=-1", "limit"), ("cursor=%25%25", "cursor"), ("cursor=WzEsMl0", "cursor"),
     ("consistent_after=nope", "consistent_after"), ("colour=red", "colour")],
)
async def test_timeline_bad_parameters_are_400_naming_the_parameter(
    world: tuple[MemoryStore, Feeder], query: str, name: str
) -> None:
    store, _ = world
    async with _client(_read_app(store)) as client:
        answer = await client.get(f"/v1/users/ann/timeline?{query}", headers=_as("ann"))
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(f"{name}:")


async def test_timeline_limit_bounds_are_accepted(world: tuple[MemoryStore, Feeder]) -> None:
    store, _ = world
    async with _client(_read_app(store)) as client:
        one = await client.get("/v1/users/ann/timeline?limit=1", headers=_as("ann"))
        most = await client.get("/v1/users/ann/timeline?limit=200", headers=_as("ann"))
    assert len(one.json()["items"]) == 1 and one.json()["next_cursor"]
    assert len(most.json()["items"]) == 9 and most.json()["next_cursor"] is None


async def test_consistent_after_waits_for_the_write(world: tuple[MemoryStore, Feeder]) -> None:
    store, feed = world
    async with _client(_read_app(store)) as client:
        token = await feed(post("bob", 50, feed.next_ts()))
        fresh = await client.get(f"/v1/users/ann/timeline?consistent_after={token}", headers=_as("ann"))
        assert fresh.status_code == 200
        assert "x-fanline-stale" not in fresh.headers
        assert fresh.json()["items"][0]["post_id"] == "bob-50"

        # A write the processor has not reached: the read waits, then answers flagged stale.
        ahead = encode_token("shard-0", str(feed.sequence + 1))
        async with _client(_read_app(store, wait_ms=50)) as impatient:
            url = f"/v1/users/ann/timeline?consistent_after={ahead}"
            stale = await impatient.get(url, headers=_as("ann"))
        assert stale.status_code == 200
        assert stale.headers["x-fanline-stale"] == "true"

        # The processor catches up while the read waits: it answers fresh, with the post.
        pending = asyncio.create_task(
            client.get(f"/v1/users/ann/timeline?consistent_after={ahead}", headers=_as("ann"))
        )
        await asyncio.sleep(0.05)
        await feed(post("cat", 51, feed.next_ts()))
        caught_up = await pending
        assert "x-fanline-stale" not in caught_up.headers
        assert caught_up.json()["items"][0]["post_id"] == "cat-51"


async def test_posts_are_public_and_paged(world: tuple[MemoryStore, Feeder]) -> None:
    store, _ = world
    async with _client(_read_app(store)) as client:
        first = (await client.get("/v1/users/bob/posts?limit=2")).json()
        assert [i["post_id"] for i in first["items"]] == ["bob-2", "bob-1"]
        rest = (await client.get(f"/v1/users/bob/posts?limit=2&cursor={first['next_cursor']}")).json()
        assert [i["post_id"] for i in rest["items"]] == ["bob-0"]
        assert rest["next_cursor"] is None
        assert (await client.get("/v1/users/ann/posts")).json() == {"items": [], "next_cursor": None}
        unknown = await client.get("/v1/users/nobody/posts")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "not_found"
        assert (await client.get("/v1/users/bob/posts?limit=500")).status_code == 400


async def test_profile(world: tuple[MemoryStore, Feeder]) -> None:
    store, _ = world
    async with _client(_read_app(store)) as client:
        bob = (await client.get("/v1/users/bob")).json()
        eve = (await client.get("/v1/users/eve")).json()
        assert (await client.get("/v1/users/nobody")).status_code == 404
        unknown = await client.get("/v1/users/bob?x=1")
        assert unknown.status_code == 400
        message = unknown.json()["error"]["message"]
        assert message == "x: unknown query parameter; this route takes no query parameters"
    assert bob == {"user_id": "bob", "handle": "bob", "display_name": "Bob", "followers": 1,
                   "following": 4, "celebrity": False}
    assert eve["followers"] == 3 and eve["following"] == 0 and eve["celebrity"] is True


async def test_followers_and_following_pages(world: tuple[MemoryStore, Feeder]) -> None:
    store, _ = world
    async with _client(_read_app(store)) as client:
        first = (await client.get("/v1/users/bob/following?limit=3")).json()
        assert first["items"] == ["cat", "dan", "eve"]
        rest = (await client.get(f"/v1/users/bob/following?limit=3&cursor={first['next_cursor']}")).json()
        assert rest == {"items": ["fay"], "next_cursor": None}
        assert (await client.get("/v1/users/eve/followers")).json() == {
            "items": ["ann", "bob", "cat"], "next_cursor": None}
        assert (await client.get("/v1/users/eve/following")).json() == {"items": [], "next_cursor": None}
        assert (await client.get("/v1/users/nobody/followers")).status_code == 404
        assert (await client.get("/v1/users/bob/following?cursor=%25")).status_code == 400
        assert (await client.get("/v1/users/bob/followers?limit=0")).status_code == 400


async def test_suggestions_rank_by_how_many_followees_follow_them(world: tuple[MemoryStore, Feeder]) -> None:
    store, _ = world
    async with _client(_read_app(store)) as client:
        ann = (await client.get("/v1/users/ann/suggestions")).json()
        one = (await client.get("/v1/users/ann/suggestions?limit=1")).json()
        assert (await client.get("/v1/users/nobody/suggestions")).status_code == 404
        assert (await client.get("/v1/users/ann/suggestions?limit=0")).status_code == 400
    # ann follows bob, cat, eve; bob follows cat dan eve fay; cat follows dan eve fay.
    # Not yet followed, not ann: dan (2), fay (2); ties by id.
    assert ann == {"items": [{"user_id": "dan", "handle": "dan", "score": 2},
                             {"user_id": "fay", "handle": "fay", "score": 2}]}
    assert one == {"items": [{"user_id": "dan", "handle": "dan", "score": 2}]}


async def test_mutuals(world: tuple[MemoryStore, Feeder]) -> None:
    store, _ = world
    async with _client(_read_app(store)) as client:
        both = (await client.get("/v1/users/bob/mutuals/cat")).json()
        none = (await client.get("/v1/users/ann/mutuals/dan")).json()
        assert (await client.get("/v1/users/bob/mutuals/nobody")).status_code == 404
    assert both == {"items": ["dan", "eve", "fay"]}
    assert none == {"items": []}


class RefusingStore(MemoryStore):
    async def timeline_page(self, user_id: str, limit: int, before: SortKey | None) -> list[TimelineEntry]:
        raise StoreUnavailable("throttled after 8 attempts")

    async def users(self, user_ids: Collection[str]) -> dict[str, User]:
        raise StoreUnavailable("throttled after 8 attempts")


async def test_a_refusing_store_is_503_with_retry_after() -> None:
    async with _client(_read_app(RefusingStore())) as client:
        for url in ("/v1/users/ann/timeline", "/v1/users/ann", "/v1/users/ann/followers"):
            answer = await client.get(url, headers=_as("ann"))
            assert answer.status_code == 503, url
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["error"]["code"] == "store_unavailable"
            assert "throttled" in answer.json()["error"]["message"]
