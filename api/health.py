"""Liveness, readiness and Prometheus metrics, plus the middleware that times every request.

/healthz answers 200 while the process runs. /readyz asks the store (`ping`) and the log (its
shard list, the cheapest call every log adapter has) and answers 503 naming what failed.
/metrics serves a prometheus_client registry: the request latency histogram below, and
whatever the write API and the processors registered there (appends, lag, deliveries, dead
letters) when they run in this process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from projections.store import Store
from streams.log import Log

# A dependency that has not answered by then counts as down: a probe must answer quickly.
READY_TIMEOUT_S = 2.0

# Fine buckets under 10 ms: the read path is expected to live there.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUEST_LATENCY = Histogram(
    "fanline_http_request_duration_seconds",
    "Time from request start to the end of the response, by route template",
    ("method", "route", "status"),
    buckets=LATENCY_BUCKETS,
)

_encoder = msgspec.json.Encoder()


class LatencyMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware, which costs a task per request on the hot path).

    Labels use the route's template (`/v1/users/{user_id}/timeline`), never the raw path, so
    the number of series stays bounded.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The router leaves the matched route in the scope (the same dict we passed down).
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUEST_LATENCY.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - start
            )


async def _answers(name: str, probe: Awaitable[object]) -> str | None:
    """None when the probe finished in time, else why it did not."""
    try:
        await asyncio.wait_for(probe, READY_TIMEOUT_S)
    except TimeoutError:
        return f"{name}: no answer within {READY_TIMEOUT_S:g} s"
    except Exception as exc:
        return f"{name}: {type(exc).__name__}: {exc}"
    return None


def health_routes(log: Log, store: Store, registry: CollectorRegistry = REGISTRY) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(request: Request) -> Response:
        problems = [
            p
            for p in await asyncio.gather(_answers("store", store.ping()), _answers("log", log.shards()))
            if p is not None
        ]
        if problems:
            body = {"error": {"code": "not_ready", "message": "; ".join(problems)}}
            return Response(_encoder.encode(body), status_code=503, media_type="application/json")
        return Response(b'{"status":"ready"}', media_type="application/json")

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
