"""The write routes of API.md: each appends events to the log and answers 202 once they are durable.

A request is checked completely (body, token, acting user, the users and posts it names) before
anything is appended, so bad input changes nothing. An `Idempotency-Key` is claimed in the
AccountStore before the append and holds the answer afterwards: a retry gets the first answer
and appends nothing, also after a restart. When the log refuses (LogUnavailable after its own
retries) the claim is dropped and the answer is 503 with Retry-After: nothing was appended, or
(Kinesis's PutRecords is not atomic) a part whose retry is safe, since every effect is idempotent.

Known limits: a post is known to DELETE (and a user of /v1/events to follows) once the processors have
projected it, so deleting a post in the first moments after creating it answers 404; a crash
between the append and recording the answer leaves the key pending for STALE_CLAIM_MS, after
which a retry appends again; idempotency records are kept forever (no expiry yet).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.accounts import AccountStore, IdempotencyRecord
from api.auth import Principal, acting_user, authenticate, require_producer
from api.batcher import AppendBatcher
from api.bodies import MAX_BATCH_BODY_BYTES, decode_as, read_body
from api.consistency import encode_token
from api.errors import ApiError
from projections.store import Store
from streams.events import (
    Event,
    FollowData,
    Id,
    PostCreated,
    PostCreatedData,
    PostDeleted,
    PostDeletedData,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
    UserUnfollowed,
    encode,
    partition_key,
)
from streams.log import Appended, LogUnavailable

MAX_BATCH_EVENTS = 500
MAX_POST_CHARS = 500
MAX_IDEMPOTENCY_KEY_CHARS = 255
# A claim still pending after this long belongs to a request that died: a retry may take it over.
STALE_CLAIM_MS = 30_000
RETRY_AFTER_S = "1"


def new_id() -> str:
    """A uuid7-like id: 48 bits of ms since the epoch then 80 random bits, as 32 hex digits (sortable)."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- bodies --------------------------------------------------------------------------------------


class PostBody(msgspec.Struct, forbid_unknown_fields=True):
    body: str
    actor_id: Id | None = None


class FollowBody(msgspec.Struct, forbid_unknown_fields=True):
    followee_id: Id
    actor_id: Id | None = None


class ActorBody(msgspec.Struct, forbid_unknown_fields=True):
    """The optional body of a DELETE: a producer names the user it acts for."""

    actor_id: Id | None = None


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    data: dict[str, Any]
    id: Id | None = None
    ts: Annotated[int, msgspec.Meta(ge=0)] | None = None


class EventsBody(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[EventIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH_EVENTS)]


_encode = msgspec.json.Encoder().encode


def _json(answer: dict[str, Any], status: int = 202) -> Response:
    return Response(_encode(answer), status_code=status, media_type="application/json")


def _event_from(index: int, raw: EventIn, ts: int) -> Event:
    envelope = {"type": raw.type, "id": raw.id or new_id(), "ts": ts if raw.ts is None else raw.ts,
                "data": raw.data}
    try:
        event: Event = msgspec.convert(envelope, Event)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_event", f"events[{index}]: {exc}") from exc
    return event


class Writer:
    """Appends events for the routes, with the Idempotency-Key protocol around the append."""

    def __init__(self, batcher: AppendBatcher, accounts: AccountStore) -> None:
        self._batcher = batcher
        self._accounts = accounts

    async def append(self, events: Sequence[Event]) -> list[Appended]:
        try:
            return await self._batcher.append([(partition_key(e), encode(e)) for e in events])
        except LogUnavailable as exc:
            raise ApiError(
                503, "log_unavailable", f"the event log refused the write; retry later ({exc})",
                {"Retry-After": RETRY_AFTER_S},
            ) from exc

    async def register(self, user_id: str, handle: str, display_name: str) -> str:
        """Append UserRegistered; its consistency token (sign-up's `Registrar`)."""
        data = UserRegisteredData(user_id=user_id, handle=handle, display_name=display_name)
        [appended] = await self.append([UserRegistered(id=new_id(), ts=now_ms(), data=data)])
        return encode_token(appended.shard_id, appended.sequence)

    async def commit(
        self, request: Request, raw: bytes, principal: Principal, events: Sequence[Event],
        answer: dict[str, Any],
    ) -> Response:
        """Append `events` and answer 202 with `answer` plus the consistency token of the last one."""
        key = request.headers.get("idempotency-key")
        if key is None:
            return _json(await self._answer(events, answer))
        if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_CHARS:
            raise ApiError(
                400, "invalid_header", f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"
            )
        fingerprint = hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + raw).hexdigest()
        record = IdempotencyRecord(f"{principal.scope}:{principal.user_id}:{key}", fingerprint, now_ms())
        first = await self._accounts.claim(record, STALE_CLAIM_MS)
        if first is not None:
            return self._replay(first, fingerprint)
        try:
            body = await self._answer(events, answer)
        except Exception:
            # The append failed: free the key for the retry. Not on cancellation (shutdown): the
            # append may still land, so the claim stays and goes stale after STALE_CLAIM_MS.
            await self._accounts.release(record.key)
            raise
        encoded = _encode(body)
        await self._accounts.complete(record.key, 202, encoded)
        return Response(encoded, status_code=202, media_type="application/json")

    async def _answer(self, events: Sequence[Event], answer: dict[str, Any]) -> dict[str, Any]:
        appended = await self.append(events)
        last = appended[-1]
        return {**answer, "consistency_token": encode_token(last.shard_id, last.sequence)}

    @staticmethod
    def _replay(first: IdempotencyRecord, fingerprint: str) -> Response:
        if first.fingerprint != fingerprint:
            raise ApiError(422, "idempotency_key_reused",
                           "Idempotency-Key was already used for a different request")
        if first.pending:
            raise ApiError(409, "idempotency_in_progress",
                           "a request with this Idempotency-Key is still being processed",
                           {"Retry-After": RETRY_AFTER_S})
        return Response(first.body, status_code=first.status, media_type="application/json",
                        headers={"Idempotent-Replayed": "true"})


def write_routes(writer: Writer, store: Store, accounts: AccountStore) -> list[Route]:
    async def require_user(user_id: str, field: str) -> None:
        # Signed-up users are known at once; world users (written as raw events) once projected.
        if not await accounts.exists(user_id) and not await store.users([user_id]):
            raise ApiError(404, "not_found", f"{field}: no user {user_id!r}")

    async def actor_of_delete(request: Request, principal: Principal) -> tuple[bytes, str]:
        raw = await read_body(request)
        actor_id = decode_as(raw, ActorBody).actor_id if raw.strip() else None
        return raw, acting_user(principal, actor_id)

    async def create_post(request: Request) -> Response:
        principal = authenticate(request)
        raw = await read_body(request)
        body = decode_as(raw, PostBody)
        author_id = acting_user(principal, body.actor_id)
        text = body.body.strip()
        if not 1 <= len(text) <= MAX_POST_CHARS:
            raise ApiError(400, "invalid_body",
                           f"body: 1 to {MAX_POST_CHARS} characters after trimming, got {len(text)}")
        post_id = new_id()
        event = PostCreated(id=new_id(), ts=now_ms(),
                            data=PostCreatedData(post_id=post_id, author_id=author_id, body=text))
        answer = {"event_id": event.id, "post_id": post_id}
        return await writer.commit(request, raw, principal, [event], answer)

    async def delete_post(request: Request) -> Response:
        principal = authenticate(request)
        raw, actor_id = await actor_of_delete(request, principal)
        post_id: str = request.path_params["post_id"]
        post = (await store.posts_by_id([post_id])).get(post_id)
        if post is None:
            raise ApiError(404, "not_found", f"post_id: no post {post_id!r}")
        if post.author_id != actor_id:
            raise ApiError(403, "forbidden", f"post_id: {post_id!r} is not a post of {actor_id!r}")
        data = PostDeletedData(post_id=post_id, author_id=actor_id)
        event = PostDeleted(id=new_id(), ts=now_ms(), data=data)
        return await writer.commit(request, raw, principal, [event], {"event_id": event.id})

    async def follow(request: Request) -> Response:
        principal = authenticate(request)
        raw = await read_body(request)
        body = decode_as(raw, FollowBody)
        follower_id = acting_user(principal, body.actor_id)
        if body.followee_id == follower_id:
            raise ApiError(400, "self_follow", "followee_id: a user cannot follow themself")
        await require_user(body.followee_id, "followee_id")
        event = UserFollowed(id=new_id(), ts=now_ms(),
                             data=FollowData(follower_id=follower_id, followee_id=body.followee_id))
        return await writer.commit(request, raw, principal, [event], {"event_id": event.id})

    async def unfollow(request: Request) -> Response:
        principal = authenticate(request)
        raw, follower_id = await actor_of_delete(request, principal)
        followee_id: str = request.path_params["followee_id"]
        await require_user(followee_id, "followee_id")
        event = UserUnfollowed(id=new_id(), ts=now_ms(),
                               data=FollowData(follower_id=follower_id, followee_id=followee_id))
        return await writer.commit(request, raw, principal, [event], {"event_id": event.id})

    async def events(request: Request) -> Response:
        principal = authenticate(request)
        require_producer(principal)
        raw = await read_body(request, MAX_BATCH_BODY_BYTES)
        batch = decode_as(raw, EventsBody)
        ts = now_ms()
        checked = [_event_from(i, e, ts) for i, e in enumerate(batch.events)]
        answer = {"accepted": len(checked), "event_ids": [e.id for e in checked]}
        return await writer.commit(request, raw, principal, checked, answer)

    return [
        Route("/v1/posts", create_post, methods=["POST"]),
        Route("/v1/posts/{post_id}", delete_post, methods=["DELETE"]),
        Route("/v1/follows", follow, methods=["POST"]),
        Route("/v1/follows/{followee_id}", unfollow, methods=["DELETE"]),
        Route("/v1/events", events, methods=["POST"]),
    ]

