"""The web app's routes in process: static files and their caching, and /v1/pipeline's figures."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from starlette.applications import Starlette

from api.errors import ApiError, handle_api_error
from api.web import IMMUTABLE, LAG_COUNT_CAP, REVALIDATE, STATIC_DIR, Assets, pipeline_routes, shard_lags
from fanline.benchmarks.wrk import free_port
from fanline.emulators import Emulator
from processors.metrics import Metrics
from projections.memory_store import MemoryStore
from projections.records import DeadLetter
from streams.kinesis_log import KinesisLog
from streams.log import Log
from streams.sqlite_log import SQLiteLog
from tests.api.conftest import Api


async def test_index_is_revalidated_and_names_versioned_assets(api: Api) -> None:
    answer = await api.client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["cache-control"] == REVALIDATE
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    version = Assets().version
    assert f"/static/app.js?v={version}" in answer.text
    assert f"/static/app.css?v={version}" in answer.text
    again = await api.client.get("/", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


async def test_current_assets_are_immutable_and_others_revalidated(api: Api) -> None:
    version = Assets().version
    current = await api.client.get(f"/static/app.js?v={version}")
    assert current.status_code == 200
    assert current.headers["content-type"].startswith("text/javascript")
    assert current.headers["cache-control"] == IMMUTABLE
    assert current.content == (STATIC_DIR / "app.js").read_bytes()
    stale = await api.client.get("/static/app.css?v=an-older-release")
    assert stale.headers["cache-control"] == REVALIDATE
    assert stale.headers["content-type"].startswith("text/css")
    revalidated = await api.client.get("/static/app.css", headers={"If-None-Match": stale.headers["etag"]})
    assert revalidated.status_code == 304


@pytest.mark.parametrize("name", ["nope.js", "__init__.py", "index.html", "..%2Fweb.py"])
async def test_only_the_named_assets_are_served(api: Api, name: str) -> None:
    answer = await api.client.get(f"/static/{name}")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_the_pages_load_nothing_from_elsewhere() -> None:
    """No CDN: every URL the files name is on this origin (the page must work offline)."""
    for path in STATIC_DIR.iterdir():
        if path.suffix in (".html", ".css", ".js"):
            text = path.read_text()
            assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path
            assert "@import" not in text and "url(http" not in text, path


def test_the_version_changes_with_any_asset(tmp_path: Path) -> None:
    for name in ("index.html", "app.js", "app.css"):
        (tmp_path / name).write_bytes((STATIC_DIR / name).read_bytes())
    before = Assets(tmp_path)
    (tmp_path / "app.css").write_text("body { color: black; }")
    after = Assets(tmp_path)
    assert before.version != after.version
    assert after.version.encode() in after.index and before.index_etag != after.index_etag


async def test_pipeline_counts_records_not_yet_applied_and_dead_letters(api: Api) -> None:
    first = await api.client.get("/v1/pipeline")
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    figures = first.json()
    assert figures["strategy"] == "hybrid"
    assert figures["celebrity_threshold"] == 50_000
    assert sorted(s["behind"] for s in figures["shards"]) == [0, 0, 0, 0]

    # From here on, an app that never reuses an answer (the API's reuses one for a second).
    async with _client(_pipeline_app(api.log, api.store, None, CollectorRegistry())) as client:
        appended = await api.log.append([("alice", b"one"), ("alice", b"two"), ("bob", b"three")])
        alice_shard = appended[0].shard_id
        behind = {s["shard_id"]: s["behind"] for s in (await client.get("/v1/pipeline")).json()["shards"]}
        expected = {alice_shard: 2}
        expected[appended[2].shard_id] = expected.get(appended[2].shard_id, 0) + 1
        assert {k: v for k, v in behind.items() if v} == expected

        # The processor applies alice's first record: one of hers is left.
        await api.store.apply([], alice_shard, appended[0].sequence)
        await api.store.put_dead_letter(DeadLetter(alice_shard, appended[1].sequence, "boom", b"two", 3, 1))
        figures = (await client.get("/v1/pipeline")).json()
        shard = next(s for s in figures["shards"] if s["shard_id"] == alice_shard)
        assert shard["applied_sequence"] == appended[0].sequence
        assert shard["behind"] == expected[alice_shard] - 1
        assert not shard["behind_capped"]
        assert figures["dead_letters_stored"] == 1


async def test_pipeline_lag_is_capped(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.db", shard_count=1)
    try:
        await log.append([("k", b"x")] * (LAG_COUNT_CAP + 5))
        app = _pipeline_app(log, MemoryStore(), None, CollectorRegistry())
        async with _client(app) as client:
            (shard,) = (await client.get("/v1/pipeline")).json()["shards"]
        assert shard["behind"] == LAG_COUNT_CAP and shard["behind_capped"]
    finally:
        await log.close()


async def test_pipeline_answers_are_reused_for_a_while(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.db", shard_count=1)
    try:
        reusing = _pipeline_app(log, MemoryStore(), None, CollectorRegistry(), reuse_s=60)
        async with _client(reusing) as client:
            first = (await client.get("/v1/pipeline")).json()
            await log.append([("k", b"x")])
            assert (await client.get("/v1/pipeline")).json() == first
        async with _client(_pipeline_app(log, MemoryStore(), None, CollectorRegistry(), reuse_s=0)) as client:
            assert (await client.get("/v1/pipeline")).json()["shards"][0]["behind"] == 1
    finally:
        await log.close()


async def test_pipeline_refuses_query_parameters(api: Api) -> None:
    answer = await api.client.get("/v1/pipeline?shard=1")
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("shard:")


@pytest.fixture
def processor_metrics() -> Iterator[tuple[str, Metrics]]:
    """The processors' /metrics served from their own registry, as `fanline process` does."""
    metrics = Metrics(CollectorRegistry())
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    yield f"http://127.0.0.1:{port}/metrics", metrics
    server.shutdown()
    thread.join()


async def test_pipeline_sums_the_processors_scraped_counters(
    tmp_path: Path, processor_metrics: tuple[str, Metrics]
) -> None:
    url, metrics = processor_metrics
    metrics.deliveries.labels("push").inc(7)
    metrics.deliveries.labels("hybrid").inc(3)
    metrics.dead_letters.labels("shard-0", "decode").inc(2)
    log = SQLiteLog(tmp_path / "log.db", shard_count=2)
    try:
        app = _pipeline_app(log, MemoryStore(), url, CollectorRegistry())
        async with _client(app) as client:
            figures = (await client.get("/v1/pipeline")).json()
        assert figures["processor_metrics"] == "scraped"
        assert figures["counters"] == {"events_appended": None, "deliveries": 10.0, "dead_letters": 2.0}
    finally:
        await log.close()


async def test_pipeline_says_when_the_processors_do_not_answer(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.db", shard_count=1)
    try:
        nobody = f"http://127.0.0.1:{free_port()}/metrics"
        app = _pipeline_app(log, MemoryStore(), nobody, CollectorRegistry())
        async with _client(app) as client:
            answer = await client.get("/v1/pipeline")
        assert answer.status_code == 200
        assert answer.json()["processor_metrics"] == "unavailable: ConnectError"
        assert answer.json()["counters"]["deliveries"] is None
    finally:
        await log.close()


def _pipeline_app(
    log: Log, store: MemoryStore, url: str | None, registry: CollectorRegistry, reuse_s: float = 0
) -> Starlette:
    routes = pipeline_routes(log, store, strategy="push", celebrity_threshold=3, processor_metrics_url=url,
                             registry=registry, reuse_s=reuse_s)
    return Starlette(routes=routes, exception_handlers={ApiError: handle_api_error})


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fanline.test")


async def test_lag_on_kinesalite(kinesalite: Emulator) -> None:
    """The same bounded reads on Kinesis: records after the applied mark, per shard."""
    log = await KinesisLog.connect(f"web-{uuid.uuid4().hex[:12]}", endpoint_url=kinesalite.endpoint_url)
    try:
        await log.ensure_stream(2)
        appended = await log.append([("alice", b"1"), ("alice", b"2"), ("bob", b"3"), ("carol", b"4")])
        store = MemoryStore()
        assert sum(lag.behind for lag in await shard_lags(log, store)) == 4
        await store.apply([], appended[0].shard_id, appended[1].sequence)  # alice's two are applied
        lags = {lag.shard_id: lag for lag in await shard_lags(log, store)}
        assert lags[appended[0].shard_id].applied_sequence == appended[1].sequence
        assert sum(lag.behind for lag in lags.values()) == 2
    finally:
        await log.close()
