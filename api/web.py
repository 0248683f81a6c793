"""The web app for people: static pages under `/` and the one JSON route they need, `/v1/pipeline`.

The pages are plain HTML, CSS and JavaScript in `api/static/`, read once at start-up (a few KB)
and served only by name, so no path from a request ever reaches the file system. Caching:
`/` (index.html) is `no-cache` with an ETag, so a browser revalidates it every time and gets a
cheap 304; it names the assets as `/static/NAME?v=VERSION`, VERSION being a hash of every asset,
and an asset asked for with the current VERSION is `immutable` for a year. A new release changes
VERSION, hence the URLs, so a browser never runs stale JavaScript against a newer API.

`/v1/pipeline` is what the pipeline page draws. The processors usually run in another process
(`fanline process`), so it does not rely on their metrics alone:
  - lag per shard is measured here: the records in the log after the store's applied mark for
    the shard, counted up to LAG_COUNT_CAP (one bounded read per shard);
  - dead letters are counted in the store (up to DEAD_LETTER_CAP);
  - the counters (events appended, fan-out deliveries, dead letters) are summed from this
    process's Prometheus registry and, when given, the processors' /metrics; the page turns
    two successive answers into per-second rates.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ssl
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import msgspec
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.errors import ApiError
from projections.store import Store, StoreUnavailable
from streams.log import Log, LogUnavailable, Position

STATIC_DIR = Path(__file__).parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
# Everything the pages load comes from this origin: no CDN, and no inline script to inject into.
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"

LAG_COUNT_CAP = 1000
DEAD_LETTER_CAP = 1000
# The pipeline page polls every 2 s; a processor that does not answer quickly is shown as unknown.
SCRAPE_TIMEOUT_S = 1.0
# At most one set of shard reads per this many seconds per API process (see pipeline_routes).
REUSE_S = 1.0

# Prometheus sample names (a Counter's samples end in _total) -> the field of Counters they sum into.
COUNTER_SAMPLES = {
    "fanline_events_appended_total": "events_appended",
    "fanline_timeline_deliveries_total": "deliveries",
    "fanline_dead_letters_total": "dead_letters",
}


class ShardLag(msgspec.Struct):
    shard_id: str
    closed: bool
    applied_sequence: str | None
    # Records in the log not yet applied to the store, counted up to LAG_COUNT_CAP.
    behind: int
    behind_capped: bool
    millis_behind: int


class Counters(msgspec.Struct):
    """Totals since the processes started; null when no process we can see exposes the metric."""

    events_appended: float | None = None
    deliveries: float | None = None
    dead_letters: float | None = None


class Pipeline(msgspec.Struct):
    at_ms: int
    strategy: str
    celebrity_threshold: int
    shards: list[ShardLag]
    dead_letters_stored: int
    dead_letters_capped: bool
    counters: Counters
    # Where the processors' counters came from: "in process", "scraped" or why they are missing.
    processor_metrics: str


_encode = msgspec.json.Encoder().encode


# --- static files ----------------------------------------------------------------------------


class Assets:
    """The files of `static_dir`, their version, and index.html with that version filled in."""

    def __init__(self, static_dir: Path = STATIC_DIR) -> None:
        self.files: dict[str, bytes] = {
            path.name: path.read_bytes()
            for path in sorted(static_dir.iterdir())
            if path.suffix in CONTENT_TYPES and path.name != "index.html"
        }
        digest = hashlib.sha256()
        for name, body in self.files.items():
            digest.update(name.encode() + b"\0" + body + b"\0")
        self.version = digest.hexdigest()[:16]
        template = (static_dir / "index.html").read_bytes()
        self.index = template.replace(b"{{version}}", self.version.encode())
        self.index_etag = '"' + hashlib.sha256(self.index).hexdigest()[:16] + '"'


def _etag_matches(request: Request, etag: str) -> bool:
    return etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]


def static_routes(assets: Assets) -> list[Route]:
    async def index(request: Request) -> Response:
        headers = {"Cache-Control": REVALIDATE, "ETag": assets.index_etag, "Content-Security-Policy": CSP,
                   "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
        if _etag_matches(request, assets.index_etag):
            return Response(status_code=304, headers=headers)
        return Response(assets.index, media_type=CONTENT_TYPES[".html"], headers=headers)

    async def asset(request: Request) -> Response:
        name: str = request.path_params["name"]
        body = assets.files.get(name)
        if body is None:
            raise ApiError(404, "not_found", f"name: no static file {name!r}")
        # Only the current version may be cached for good: an old URL must not pin new bytes.
        current = request.query_params.get("v") == assets.version
        etag = f'"{assets.version}"'
        headers = {"Cache-Control": IMMUTABLE if current else REVALIDATE, "ETag": etag,
                   "X-Content-Type-Options": "nosniff"}
        if _etag_matches(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=CONTENT_TYPES[Path(name).suffix], headers=headers)

    return [
        Route("/", index, methods=["GET"], include_in_schema=False),
        Route("/static/{name}", asset, methods=["GET"], include_in_schema=False),
    ]


# --- the pipeline figures ---------------------------------------------------------------------


async def shard_lags(log: Log, store: Store) -> list[ShardLag]:
    applied = await store.applied()
    shards = await log.shards()

    async def lag(shard_id: str, closed: bool) -> ShardLag:
        mark = applied.get(shard_id)
        start = Position.after(mark) if mark is not None else Position.trim_horizon()
        result = await log.reader(shard_id, start).read(LAG_COUNT_CAP)
        behind = len(result.records)
        return ShardLag(shard_id, closed, mark, behind, behind >= LAG_COUNT_CAP, result.millis_behind)

    return list(await asyncio.gather(*(lag(s.shard_id, s.closed) for s in shards)))


def sum_counters(families: Iterable[Metric], into: dict[str, float]) -> None:
    """Add the samples named in COUNTER_SAMPLES (over all their labels) into `into`, by field."""
    for family in families:
        for sample in family.samples:
            field = COUNTER_SAMPLES.get(sample.name)
            if field is not None:
                into[field] = into.get(field, 0.0) + sample.value


@functools.cache
def _tls() -> ssl.SSLContext:
    # Built once: httpx would build (and load the CA bundle into) a new one per client, ~50 ms.
    return ssl.create_default_context()


async def scrape(url: str) -> list[Metric]:
    async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_S, verify=_tls()) as client:
        answer = await client.get(url)
        answer.raise_for_status()
    return list(text_string_to_metric_families(answer.text))


def pipeline_routes(
    log: Log,
    store: Store,
    *,
    strategy: str,
    celebrity_threshold: int,
    processor_metrics_url: str | None = None,
    registry: CollectorRegistry = REGISTRY,
    reuse_s: float = REUSE_S,
) -> list[Route]:
    """`processor_metrics_url`: the processors' /metrics when they run in another process.

    An answer is reused for `reuse_s`: each one reads every shard once, and Kinesis allows five
    reads per second per shard, shared with the processors, however many people watch the page.
    """
    last: list[tuple[float, bytes]] = []

    async def pipeline(request: Request) -> Response:
        for name in request.query_params:
            raise ApiError(400, "bad_parameter", f"{name}: unknown query parameter; this route takes none")
        if not last or time.monotonic() - last[0][0] >= reuse_s:
            last[:] = [(time.monotonic(), _encode(await figures()))]
        return Response(last[0][1], media_type="application/json", headers={"Cache-Control": "no-store"})

    async def figures() -> Pipeline:
        try:
            lags = await shard_lags(log, store)
            letters = await store.dead_letters(DEAD_LETTER_CAP)
        except (StoreUnavailable, LogUnavailable) as exc:
            message = f"the log or the store did not answer; retry later ({exc})"
            raise ApiError(503, "unavailable", message, {"Retry-After": "1"}) from exc
        totals: dict[str, float] = {}
        sum_counters(registry.collect(), totals)
        source = "in process" if "deliveries" in totals else "not in this process"
        if processor_metrics_url is not None:
            try:
                sum_counters(await scrape(processor_metrics_url), totals)
                source = "scraped"
            except (httpx.HTTPError, ValueError) as exc:
                source = f"unavailable: {type(exc).__name__}"
        return Pipeline(
            at_ms=int(time.time() * 1000),
            strategy=strategy,
            celebrity_threshold=celebrity_threshold,
            shards=lags,
            dead_letters_stored=len(letters),
            dead_letters_capped=len(letters) >= DEAD_LETTER_CAP,
            counters=Counters(**totals),
            processor_metrics=source,
        )

    return [Route("/v1/pipeline", pipeline, methods=["GET"])]


def web_routes(
    log: Log,
    store: Store,
    *,
    strategy: str,
    celebrity_threshold: int,
    processor_metrics_url: str | None = None,
) -> list[Route]:
    """Everything the web app adds to the API: the pages and /v1/pipeline."""
    return [
        *static_routes(Assets()),
        *pipeline_routes(log, store, strategy=strategy, celebrity_threshold=celebrity_threshold,
                         processor_metrics_url=processor_metrics_url),
    ]
