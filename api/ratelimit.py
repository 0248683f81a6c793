"""A request rate limit per bearer token: a token bucket, 429 with Retry-After when it is empty.

    app = Starlette(..., middleware=[Middleware(RateLimitMiddleware, per_s=100, burst=200)])

Only the API (`/v1/...`) is limited: probes, metrics, docs and the web pages are not. The key is
the Authorization header as sent, not the verified principal: checking the signature first would
let an unlimited stream of bad tokens cost a verification each. A request without one is keyed by
its client address. Forged tokens each get a bucket of their own, so the table of buckets is
bounded: when it holds `max_keys`, the fuller half (idle or forged keys) is forgotten, which is
safe: a forgotten key starts again with a full bucket, as it would have after a short pause.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_KEYS = 100_000
LIMITED_PREFIX = "/v1/"

_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """`per_s` requests per second per key, up to `burst` at once."""

    def __init__(
        self, per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if per_s <= 0 or burst < 1:
            raise ValueError(f"rate limit needs per_s > 0 and burst >= 1, got {per_s} and {burst}")
        self.per_s = per_s
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """0.0 when a request may go now (one token taken), else the seconds until one may."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_idle(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.per_s)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.per_s

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_idle(self, now: float) -> None:
        # Keep the emptier half: the busy keys, whose limit matters; a forgotten bucket starts full.
        def level(item: tuple[str, _Bucket]) -> float:
            return item[1].tokens + (now - item[1].at) * self.per_s

        kept = sorted(self._buckets.items(), key=level)[: self._max_keys // 2]
        self._buckets = dict(kept)


def _key(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            # A digest: the table never holds a usable token.
            return "t:" + hashlib.blake2b(value, digest_size=16).hexdigest()
    client = scope.get("client")
    return f"a:{client[0] if client else '?'}"


class RateLimitMiddleware:
    """Pure ASGI (no task per request). Answers 429 in the API's error shape."""

    def __init__(
        self, app: ASGIApp, per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_s, burst, clock=clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        wait_s = self.buckets.take(_key(scope))
        if wait_s == 0.0:
            await self.app(scope, receive, send)
            return
        retry_after = str(max(1, math.ceil(wait_s)))
        body = _encode({"error": {"code": "rate_limited", "message":
                                  f"more than {self.buckets.per_s:g} requests per second with this token;"
                                  f" retry after {retry_after} s"}})
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", retry_after.encode())]})
        await send({"type": "http.response.body", "body": body})
