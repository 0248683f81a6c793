"""The read routes of API.md: timelines, posts, profiles, follow lists, suggestions, mutuals.

`read_routes(store, timelines, consistent)` gives the Starlette routes; `api.app.create_app`
mounts them beside the write routes. Answers are encoded by msgspec straight from structs (no
per-request reflection); errors are `ApiError`s, answered in the one error shape.

Suggestions and mutuals come from the graph projection (projections.graph) when one is given,
else from the Store port's follow lists (`store_suggestions`, `store_mutuals`: also the
reference the graph is tested and benchmarked against): suggestions are the people the user's
followees follow, not yet followed and not the user, ranked by how many followees follow them
(ties by user id). Handles come from the Store either way.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Awaitable, Callable, Collection

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import authenticate
from api.consistency import BadConsistencyToken, ConsistencyCheck
from api.errors import ApiError
from api.timeline_cache import TimelineCache
from projections.graph import GraphStore, GraphUnavailable
from projections.store import Store, StoreUnavailable
from projections.timeline import BadCursor, TimelineReader, decode_cursor

MAX_LIMIT = 200
PAGE_LIMIT = 50
SUGGESTIONS_LIMIT = 10
RETRY_AFTER_S = "1"
JSON = "application/json"


class UserPage(msgspec.Struct):
    items: list[str]
    next_cursor: str | None


class Profile(msgspec.Struct):
    user_id: str
    handle: str
    display_name: str
    followers: int
    following: int
    celebrity: bool


class Suggestion(msgspec.Struct):
    user_id: str
    handle: str
    score: int


class Suggestions(msgspec.Struct):
    items: list[Suggestion]


class UserIds(msgspec.Struct):
    items: list[str]


_encode = msgspec.json.Encoder().encode


def _json(answer: object, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(answer), media_type=JSON, headers=headers)


def _bad(name: str, why: str) -> ApiError:
    return ApiError(400, "bad_parameter", f"{name}: {why}")


def _query(request: Request, allowed: Collection[str]) -> dict[str, str]:
    """The query parameters, refusing any the route does not take (API.md: unknown fields are 400)."""
    params = dict(request.query_params)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        takes = ", ".join(sorted(allowed)) or "no query parameters"
        raise _bad(unknown[0], f"unknown query parameter; this route takes {takes}")
    return params


def _limit(params: dict[str, str], default: int) -> int:
    raw = params.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise _bad("limit", f"must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def _post_cursor(params: dict[str, str]) -> str | None:
    cursor = params.get("cursor") or None
    try:
        decode_cursor(cursor)  # refuse a bad cursor before any waiting or reading
    except BadCursor as exc:
        raise _bad("cursor", str(exc)) from exc
    return cursor


# Follow lists page by user id; the cursor is the last id shown, base64url so it stays opaque.
def _encode_id_cursor(user_id: str) -> str:
    return base64.urlsafe_b64encode(user_id.encode()).decode("ascii").rstrip("=")


def _decode_id_cursor(params: dict[str, str]) -> str | None:
    cursor = params.get("cursor") or None
    if cursor is None:
        return None
    try:
        after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise _bad("cursor", f"bad cursor {cursor!r}: not one this service handed out") from exc
    if not after:
        raise _bad("cursor", f"bad cursor {cursor!r}: not one this service handed out")
    return after


Endpoint = Callable[[Request], Awaitable[Response]]


def _store_errors_as_503(endpoint: Endpoint) -> Endpoint:
    """A store that refuses (after its own retries) is the client's cue to retry, not a 500."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except StoreUnavailable as exc:
            message = f"the projection store did not answer; retry later ({exc})"
            raise ApiError(503, "store_unavailable", message, {"Retry-After": RETRY_AFTER_S}) from exc
        except GraphUnavailable as exc:
            message = f"the graph projection did not answer; retry later ({exc})"
            raise ApiError(503, "graph_unavailable", message, {"Retry-After": RETRY_AFTER_S}) from exc

    return guarded


async def store_suggestions(store: Store, user_id: str, limit: int) -> list[tuple[str, int]]:
    """Who to follow from the Store's follow lists: (user id, score), best first."""
    followees = await store.following_ids(user_id)
    already = set(followees)
    scores: Counter[str] = Counter()
    for followee in followees:
        scores.update(c for c in await store.following_ids(followee) if c != user_id and c not in already)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


async def store_mutuals(store: Store, a: str, b: str) -> list[str]:
    return sorted(set(await store.following_ids(a)) & set(await store.following_ids(b)))


def read_routes(
    store: Store, timelines: TimelineReader, consistent: ConsistencyCheck, graph: GraphStore | None = None,
    *, page_cache_bytes: int = 0,
) -> list[Route]:
    """The read routes; `consistent(token)` waits for a write to be reflected, True if it gave up.
    `page_cache_bytes`: the bound of the kept timeline pages (api.timeline_cache; 0: none kept)."""
    pages = TimelineCache(store, timelines, page_cache_bytes)

    async def require_user(user_id: str) -> None:
        if not await store.users([user_id]):
            raise ApiError(404, "not_found", f"user_id: no user {user_id!r}")

    # --- the hot path ----------------------------------------------------------------------
    async def timeline(request: Request) -> Response:
        user_id: str = request.path_params["user_id"]
        principal = authenticate(request)
        if principal.scope != "producer" and principal.user_id != user_id:
            raise ApiError(403, "forbidden", "only the user themself or a producer may read this timeline")
        params = _query(request, ("limit", "cursor", "consistent_after"))
        limit = _limit(params, PAGE_LIMIT)
        cursor = _post_cursor(params)
        stale = False
        token = params.get("consistent_after")
        if token:
            try:
                stale = await consistent(token)
            except BadConsistencyToken as exc:
                raise _bad("consistent_after", str(exc)) from exc
        body = await pages.page(user_id, limit, cursor, fresh=bool(token))
        return Response(body, media_type=JSON, headers={"X-Fanline-Stale": "true"} if stale else None)

    async def posts(request: Request) -> Response:
        user_id: str = request.path_params["user_id"]
        params = _query(request, ("limit", "cursor"))
        limit = _limit(params, PAGE_LIMIT)
        cursor = _post_cursor(params)
        page = await timelines.posts_page(user_id, limit, cursor)
        if not page.items and cursor is None:
            await require_user(user_id)
        return _json(page)

    async def profile(request: Request) -> Response:
        user_id: str = request.path_params["user_id"]
        _query(request, ())
        user = (await store.users([user_id])).get(user_id)
        if user is None:
            raise ApiError(404, "not_found", f"user_id: no user {user_id!r}")
        following = await store.following_count(user_id)
        return _json(
            Profile(user.user_id, user.handle, user.display_name, user.followers, following, user.celebrity)
        )

    def follow_list(
        fetch: Callable[[str, int, str | None], Awaitable[list[str]]],
    ) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            user_id: str = request.path_params["user_id"]
            params = _query(request, ("limit", "cursor"))
            limit = _limit(params, PAGE_LIMIT)
            after = _decode_id_cursor(params)
            await require_user(user_id)
            ids = await fetch(user_id, limit, after)
            next_cursor = _encode_id_cursor(ids[-1]) if len(ids) == limit else None
            return _json(UserPage(ids, next_cursor))

        return endpoint

    async def suggestions(request: Request) -> Response:
        user_id: str = request.path_params["user_id"]
        params = _query(request, ("limit",))
        limit = _limit(params, SUGGESTIONS_LIMIT)
        await require_user(user_id)
        if graph is not None:
            best = await graph.suggestions(user_id, limit)
        else:
            best = await store_suggestions(store, user_id, limit)
        users = await store.users([c for c, _ in best])
        items = [Suggestion(c, users[c].handle if c in users else "", n) for c, n in best]
        return _json(Suggestions(items))

    async def mutuals(request: Request) -> Response:
        a: str = request.path_params["a"]
        b: str = request.path_params["b"]
        _query(request, ())
        await require_user(a)
        await require_user(b)
        if graph is not None:
            return _json(UserIds(await graph.mutuals(a, b)))
        return _json(UserIds(await store_mutuals(store, a, b)))

    routes: list[tuple[str, Endpoint]] = [
        ("/v1/users/{user_id}/timeline", timeline),
        ("/v1/users/{user_id}/posts", posts),
        ("/v1/users/{user_id}/followers", follow_list(store.followers_page)),
        ("/v1/users/{user_id}/following", follow_list(store.following_page)),
        ("/v1/users/{user_id}/suggestions", suggestions),
        ("/v1/users/{a}/mutuals/{b}", mutuals),
        ("/v1/users/{user_id}", profile),
    ]
    return [Route(path, _store_errors_as_503(endpoint), methods=["GET"]) for path, endpoint in routes]


def static_route(method: str, path: str, body: bytes, status: int = 200) -> Route:
    """A bench-only route answering fixed bytes: the ceiling the benches compare a real route to.

    It runs through the same server, middleware and router as the real routes, so the ratio
    measures what the route itself costs.
    """

    async def endpoint(request: Request) -> Response:
        return Response(body, status_code=status, media_type=JSON)

    return Route(path, endpoint, methods=[method], include_in_schema=False)
