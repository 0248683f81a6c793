"""The Starlette application: write, auth, read, health and docs routes over the given adapters.

The caller (the composition root, or a test) owns the log, store and accounts and closes them;
the app only closes its own append batcher, on shutdown, after the appends already asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from argon2 import PasswordHasher
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from api.accounts import AccountStore
from api.auth import Tokens, auth_routes
from api.batcher import DEFAULT_LINGER_S, AppendBatcher
from api.consistency import ConsistencyWaiter
from api.errors import ApiError, error_response, handle_api_error
from api.health import LatencyMiddleware, health_routes
from api.openapi import docs_routes
from api.ratelimit import RateLimitMiddleware
from api.read import read_routes
from api.web import web_routes
from api.write import Writer, new_id, write_routes
from projections.graph import GraphStore
from projections.store import Store
from projections.timeline import Strategy, TimelineReader
from streams.log import Log


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in the API's one error shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


def create_app(
    log: Log,
    store: Store,
    accounts: AccountStore,
    *,
    secret: str,
    strategy: Strategy = "hybrid",
    consistency_wait_ms: int = 2000,
    linger_s: float = DEFAULT_LINGER_S,
    hasher: PasswordHasher | None = None,
    celebrity_threshold: int = 50_000,
    processor_metrics_url: str | None = None,
    rate_limit_per_s: float = 0.0,
    graph: GraphStore | None = None,
    page_cache_mib: int = 64,
    timelines: TimelineReader | None = None,
) -> Starlette:
    """`hasher`: argon2 with its (slow) defaults unless a test passes a cheaper one.

    `celebrity_threshold` and `processor_metrics_url` (the processors' /metrics when they run in
    another process) are only shown by the web app's pipeline page (`api.web`).
    `rate_limit_per_s`: requests per second per bearer token on /v1 (bursts of twice that; 0: no limit).
    `graph`: the graph projection answering suggestions and mutuals (else the store's follow lists).
    `page_cache_mib`: timeline pages kept while their feed stamp holds (api.timeline_cache; 0: none).
    `timelines`: the timeline reader (default: `strategy`'s on `store`; `fanline api` passes one that
    follows the projection version's strategy, projections.switching.SwitchingTimelineReader).
    """
    batcher = AppendBatcher(log, linger_s=linger_s)
    writer = Writer(batcher, accounts)
    tokens = Tokens(secret)
    # The read routes first: Starlette tries routes in order, and a timeline read is the most
    # frequent request (no path of another route matches theirs).
    routes: list[BaseRoute] = [
        *read_routes(store, timelines or TimelineReader(store, strategy),
                     ConsistencyWaiter(store, consistency_wait_ms), graph,
                     page_cache_bytes=page_cache_mib * 2**20),
        *auth_routes(accounts, tokens, writer.register, hasher or PasswordHasher(), new_id),
        *write_routes(writer, store, accounts),
        *health_routes(log, store),
        *web_routes(log, store, strategy=strategy, celebrity_threshold=celebrity_threshold,
                    processor_metrics_url=processor_metrics_url),
    ]
    # The docs routes read the final route list (their own two included) when first asked.
    routes.extend(docs_routes(routes))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await batcher.close()

    middleware = [Middleware(LatencyMiddleware)]
    if rate_limit_per_s > 0:
        burst = max(1, round(2 * rate_limit_per_s))
        middleware.append(Middleware(RateLimitMiddleware, per_s=rate_limit_per_s, burst=burst))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={ApiError: handle_api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.tokens = tokens
    app.state.batcher = batcher
    return app
