"""The OpenAPI 3.1 document of the running app (GET /openapi.json) and an offline docs page (GET /docs).

The document is generated from the app's own routes: every (method, path) the router has is
looked up in `OPERATIONS` below, and a route with no description there is an error, so the
document cannot silently fall behind the code. Body schemas come from msgspec structs (the read
answers are the very structs the routes encode).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import LoginBody, SignupBody
from api.read import MAX_LIMIT, PAGE_LIMIT, SUGGESTIONS_LIMIT, Profile, Suggestions, UserIds, UserPage
from api.web import Pipeline
from api.write import ActorBody, EventsBody, FollowBody, PostBody
from projections.timeline import TimelinePage

# --- answers' shapes (request bodies are the write side's own structs) -----------------------


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class SignupAnswer(msgspec.Struct):
    user_id: str
    token: str
    consistency_token: str


class LoginAnswer(msgspec.Struct):
    user_id: str
    token: str


class WriteAnswer(msgspec.Struct):
    event_id: str
    consistency_token: str


class PostAnswer(msgspec.Struct):
    event_id: str
    post_id: str
    consistency_token: str


class EventsAnswer(msgspec.Struct):
    accepted: int
    event_ids: list[str]
    consistency_token: str


class Status(msgspec.Struct):
    status: str


# --- what each route does -------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path", "query" or "header"
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Operation:
    summary: str
    answers: dict[int, tuple[str, type | None]]
    params: tuple[Param, ...] = ()
    body: type | None = None
    # DELETEs take an optional body (a producer's actor_id).
    body_required: bool = True
    auth: bool = False
    # A non-JSON answer (Prometheus text, the docs page): its media type.
    media_type: str = "application/json"


def _limit(default: int) -> Param:
    schema = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default}
    return Param("limit", "query", f"items per page, 1-{MAX_LIMIT}", schema)


USER = Param("user_id", "path", "the user's id", required=True)
CURSOR = Param("cursor", "query", "next_cursor of the previous page; absent for the first page")
IDEMPOTENCY = Param(
    "Idempotency-Key", "header", "a retry with the same key returns the first answer and appends nothing"
)
_E = ErrorBody
BAD = (400, ("bad input; the message names the field and why", _E))
UNAUTHENTICATED = (401, ("missing, bad or expired bearer token", _E))
REFUSED = (503, ("the stream refused after retries; retry after Retry-After seconds", _E))
TOO_BIG = (413, ("body larger than the limit", _E))
STORE_DOWN = (503, ("the projection store did not answer; retry after Retry-After seconds", _E))
IDEMPOTENT = (
    (409, ("a request with this Idempotency-Key is still in progress", _E)),
    (422, ("this Idempotency-Key was used for a different request", _E)),
)


def _answers(*pairs: tuple[int, tuple[str, type | None]]) -> dict[int, tuple[str, type | None]]:
    return dict(pairs)


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/v1/auth/signup"): Operation(
        "Create an account (handle 3-30 of [a-z0-9_], password of at least 8 characters)",
        _answers((201, ("the new user, a token, the consistency token of its registration", SignupAnswer)),
                 BAD, (409, ("handle taken", _E)), TOO_BIG, REFUSED),
        body=SignupBody,
    ),
    ("POST", "/v1/auth/login"): Operation(
        "Exchange a handle and password for a token",
        _answers(
            (200, ("the user and a token", LoginAnswer)),
            BAD,
            (401, ("wrong handle or password (one answer for both)", _E)),
        ),
        body=LoginBody,
    ),
    ("POST", "/v1/posts"): Operation(
        "Post (body 1-500 characters after trimming); a producer names the author with actor_id",
        _answers((202, ("appended to the stream", PostAnswer)), BAD, UNAUTHENTICATED,
                 (403, ("acting for another user", _E)), TOO_BIG, *IDEMPOTENT, REFUSED),
        params=(IDEMPOTENCY,),
        body=PostBody,
        auth=True,
    ),
    ("DELETE", "/v1/posts/{post_id}"): Operation(
        "Delete one's post",
        _answers((202, ("appended to the stream", WriteAnswer)), BAD, UNAUTHENTICATED,
                 (403, ("not the author", _E)), (404, ("unknown post", _E)), *IDEMPOTENT, REFUSED),
        params=(Param("post_id", "path", "the post's id", required=True), IDEMPOTENCY),
        body=ActorBody,
        body_required=False,
        auth=True,
    ),
    ("POST", "/v1/follows"): Operation(
        "Follow a user",
        _answers((202, ("appended to the stream", WriteAnswer)), (400, ("bad input or self-follow", _E)),
                 UNAUTHENTICATED, (403, ("acting for another user", _E)), (404, ("unknown user", _E)),
                 TOO_BIG, *IDEMPOTENT, REFUSED),
        params=(IDEMPOTENCY,),
        body=FollowBody,
        auth=True,
    ),
    ("DELETE", "/v1/follows/{followee_id}"): Operation(
        "Unfollow a user",
        _answers((202, ("appended to the stream", WriteAnswer)), BAD, UNAUTHENTICATED,
                 (403, ("acting for another user", _E)), (404, ("unknown user", _E)), *IDEMPOTENT, REFUSED),
        params=(Param("followee_id", "path", "whom to unfollow", required=True), IDEMPOTENCY),
        body=ActorBody,
        body_required=False,
        auth=True,
    ),
    ("POST", "/v1/events"): Operation(
        "Append up to 500 events at once (producer scope); all or nothing",
        _answers((202, ("every event appended", EventsAnswer)),
                 (400, ("a bad event; the message names its index; nothing appended", _E)),
                 UNAUTHENTICATED, (403, ("not a producer token", _E)), TOO_BIG, *IDEMPOTENT, REFUSED),
        params=(IDEMPOTENCY,),
        body=EventsBody,
        auth=True,
    ),
    ("GET", "/v1/users/{user_id}/timeline"): Operation(
        "The user's timeline, newest first (the user themself or a producer)",
        _answers((200, ("a page; header X-Fanline-Stale: true if consistent_after gave up waiting",
                        TimelinePage)),
                 BAD, UNAUTHENTICATED, (403, ("someone else's timeline", _E)), STORE_DOWN),
        params=(USER, _limit(PAGE_LIMIT), CURSOR,
                Param("consistent_after", "query", "a write's consistency_token: wait (bounded) until "
                      "that write is reflected")),
        auth=True,
    ),
    ("GET", "/v1/users/{user_id}/posts"): Operation(
        "The user's own posts, newest first",
        _answers((200, ("a page", TimelinePage)), BAD, (404, ("unknown user", _E)), STORE_DOWN),
        params=(USER, _limit(PAGE_LIMIT), CURSOR),
    ),
    ("GET", "/v1/users/{user_id}"): Operation(
        "A profile with follower and following counts",
        _answers((200, ("the profile", Profile)), BAD, (404, ("unknown user", _E)), STORE_DOWN),
        params=(USER,),
    ),
    ("GET", "/v1/users/{user_id}/followers"): Operation(
        "Who follows the user, by user id",
        _answers((200, ("a page of user ids", UserPage)), BAD, (404, ("unknown user", _E)), STORE_DOWN),
        params=(USER, _limit(PAGE_LIMIT), CURSOR),
    ),
    ("GET", "/v1/users/{user_id}/following"): Operation(
        "Whom the user follows, by user id",
        _answers((200, ("a page of user ids", UserPage)), BAD, (404, ("unknown user", _E)), STORE_DOWN),
        params=(USER, _limit(PAGE_LIMIT), CURSOR),
    ),
    ("GET", "/v1/users/{user_id}/suggestions"): Operation(
        "Who to follow: people the user's followees follow, best first",
        _answers((200, ("suggestions with their scores", Suggestions)), BAD, (404, ("unknown user", _E)),
                 STORE_DOWN),
        params=(USER, _limit(SUGGESTIONS_LIMIT)),
    ),
    ("GET", "/v1/users/{a}/mutuals/{b}"): Operation(
        "The followees a and b have in common",
        _answers((200, ("user ids", UserIds)), BAD, (404, ("unknown user", _E)), STORE_DOWN),
        params=(Param("a", "path", "a user id", required=True),
                Param("b", "path", "a user id", required=True)),
    ),
    ("GET", "/healthz"): Operation("The process is up", _answers((200, ("up", Status)))),
    ("GET", "/readyz"): Operation(
        "The log and the store answer",
        _answers((200, ("ready", Status)), (503, ("the log or the store does not answer", _E))),
    ),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics: request latencies, appends, processor lag, deliveries, dead letters",
        _answers((200, ("Prometheus text exposition", None))),
        media_type="text/plain",
    ),
    ("GET", "/v1/pipeline"): Operation(
        "The pipeline page's figures: lag per shard, dead letters, counters, strategy and threshold",
        _answers((200, ("the figures now; rates come from two answers' counters and at_ms", Pipeline)),
                 BAD, (503, ("the log or the store did not answer; retry after Retry-After seconds", _E))),
    ),
    ("GET", "/openapi.json"): Operation("This document", _answers((200, ("OpenAPI 3.1", None)))),
    ("GET", "/docs"): Operation(
        "This API as a page", _answers((200, ("HTML", None))), media_type="text/html"
    ),
}

_REF = "#/components/schemas/{name}"


class UndocumentedRoute(LookupError):
    pass


def _endpoints(routes: Sequence[BaseRoute]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, Route) and route.include_in_schema:
            found.extend((m, route.path) for m in sorted(route.methods or ()) if m != "HEAD")
    return found


def openapi_document(
    routes: Sequence[BaseRoute], title: str = "fanline", version: str = "1"
) -> dict[str, Any]:
    """The document for exactly these routes; an undocumented route raises UndocumentedRoute."""
    endpoints = _endpoints(routes)
    missing = [f"{m} {p}" for m, p in endpoints if (m, p) not in OPERATIONS]
    if missing:
        raise UndocumentedRoute(f"routes without an OpenAPI description: {', '.join(missing)}")
    types: list[type] = []
    for key in endpoints:
        op = OPERATIONS[key]
        types.extend(t for _, t in op.answers.values() if t is not None)
        if op.body is not None:
            types.append(op.body)
    unique = list(dict.fromkeys([*types, _E]))  # _E: also the 429 of every /v1 route
    refs, components = msgspec.json.schema_components(unique, ref_template=_REF)
    ref_of = dict(zip(unique, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for method, path in endpoints:
        operation = _operation(OPERATIONS[(method, path)], ref_of)
        if path.startswith("/v1/"):  # api.ratelimit limits exactly these (when the deployment sets a rate)
            operation["responses"]["429"] = {
                "description": "too many requests with this token; retry after Retry-After seconds",
                "content": {"application/json": {"schema": ref_of[_E]}},
            }
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _operation(op: Operation, ref_of: dict[type, dict[str, Any]]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status, (description, schema_type) in sorted(op.answers.items()):
        answer: dict[str, Any] = {"description": description}
        if schema_type is not None:
            answer["content"] = {"application/json": {"schema": ref_of[schema_type]}}
        elif status < 300:
            answer["content"] = {op.media_type: {}}
        answers[str(status)] = answer
    doc: dict[str, Any] = {"summary": op.summary, "responses": answers}
    if op.params:
        doc["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required, "description": p.description,
             "schema": p.schema}
            for p in op.params
        ]
    if op.body is not None:
        content = {"application/json": {"schema": ref_of[op.body]}}
        doc["requestBody"] = {"required": op.body_required, "content": content}
    if op.auth:
        doc["security"] = [{"bearer": []}]
    return doc


def docs_page(document: dict[str, Any]) -> str:
    """A self-contained HTML page (no scripts, no CDN) listing every operation of the document."""
    e = html.escape
    rows: list[str] = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            params = "".join(
                f"<li><code>{e(p['name'])}</code> ({e(p['in'])}{', required' if p['required'] else ''})"
                f" {e(p['description'])}</li>"
                for p in op.get("parameters", [])
            )
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            body_html = f"<p>Body: <code>{e(body['$ref'].rsplit('/', 1)[-1])}</code></p>" if body else ""
            answers = "".join(
                f"<li><b>{e(status)}</b> {e(a['description'])}</li>" for status, a in op["responses"].items()
            )
            lock = " &#128274; bearer token" if "security" in op else ""
            rows.append(
                f"<section><h2><span class='m'>{e(method.upper())}</span> <code>{e(path)}</code></h2>"
                f"<p>{e(op['summary'])}{lock}</p>{body_html}"
                f"{'<ul>' + params + '</ul>' if params else ''}<ul class='a'>{answers}</ul></section>"
            )
    schemas_json = msgspec.json.format(msgspec.json.encode(document["components"]["schemas"]), indent=2)
    schemas = e(schemas_json.decode())
    title = e(f"{document['info']['title']} API v{document['info']['version']}")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>"
        "body{font:15px/1.4 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "section{border-top:1px solid #ccc}h2{font-size:1.1em}.m{display:inline-block;min-width:4.5em}"
        "pre{background:#f4f4f4;padding:1em;overflow:auto}.a li{color:#333}"
        f"</style></head><body><h1>{title}</h1>"
        "<p>The machine-readable document is at <a href='/openapi.json'>/openapi.json</a>.</p>"
        f"{''.join(rows)}<h2>Schemas</h2><pre>{schemas}</pre></body></html>"
    )


def docs_routes(app_routes: Sequence[BaseRoute]) -> list[Route]:
    """GET /openapi.json and GET /docs for `app_routes` (read when first asked, so the list may
    include these two routes and anything appended after this call)."""
    cache: dict[str, bytes] = {}

    def rendered() -> dict[str, bytes]:
        if not cache:
            document = openapi_document(app_routes)
            cache["json"] = msgspec.json.encode(document)
            cache["html"] = docs_page(document).encode()
        return cache

    async def openapi_json(request: Request) -> Response:
        return Response(rendered()["json"], media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(rendered()["html"])

    return [Route("/openapi.json", openapi_json, methods=["GET"]), Route("/docs", docs, methods=["GET"])]
