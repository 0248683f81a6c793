"""The write routes: 202 once appended, clear 4xx with nothing appended, idempotency, 503."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from api.consistency import decode_token
from projections.records import Post, PutPost, PutUser, User
from streams.events import PostCreated, PostDeleted, UserFollowed, UserUnfollowed, partition_key
from streams.log import Position
from tests.api.conftest import Api, running_api


async def test_post_is_appended_and_answered(api: Api) -> None:
    answer = await api.client.post("/v1/posts", json={"body": "  hello world \n"}, headers=api.auth("u1"))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert set(body) == {"event_id", "post_id", "consistency_token"}
    [event] = api.log.events()
    assert isinstance(event, PostCreated)
    assert (event.id, event.data.post_id, event.data.author_id) == (body["event_id"], body["post_id"], "u1")
    assert event.data.body == "hello world"
    # The token names the shard and sequence where the event sits.
    token = decode_token(body["consistency_token"])
    records = (await api.log.reader(token.shard_id, Position.at(token.sequence)).read(1)).records
    assert records[0].partition_key == partition_key(event) == "u1"


BAD_POSTS = [
    (b'{"body": "hi"', 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b'["hi"]', 400, "Expected `object`"),
    (b'{"body": 7}', 400, "$.body"),
    (b'{"body": "hi", "mood": "happy"}', 400, "mood"),
    (b'{"text": "hi"}', 400, "unknown field `text`"),
    (b"{}", 400, "missing required field `body`"),
    (b'{"body": "   "}', 400, "body: 1 to 500"),
    (b'{"body": "' + b"x" * 501 + b'"}', 400, "body: 1 to 500"),
    (b'{"body": "' + b"x" * 70_000 + b'"}', 413, "larger than"),
    (b'{"body": "hi", "actor_id": "u2"}', 403, "actor_id"),
]


@pytest.mark.parametrize(("raw", "status", "says"), BAD_POSTS)
async def test_bad_post_is_refused_clearly_and_appends_nothing(
    api: Api, raw: bytes, status: int, says: str
) -> None:
    answer = await api.client.post(
        "/v1/posts", content=raw, headers={**api.auth("u1"), "Content-Type": "application/json"}
    )
    assert answer.status_code == status
    assert says in answer.json()["error"]["message"]
    assert api.log.calls == 0


async def test_producer_may_post_as_anyone(api: Api) -> None:
    answer = await api.client.post(
        "/v1/posts", json={"body": "hi", "actor_id": "u7"}, headers=api.auth("loader", "producer")
    )
    assert answer.status_code == 202
    [event] = api.log.events()
    assert isinstance(event, PostCreated) and event.data.author_id == "u7"


async def test_follow_and_unfollow(api: Api) -> None:
    # u2 is a world user, known from the projection; u3 signed up and is known to the accounts.
    await api.store.apply([PutUser(User("u2", "two", "Two"))], "shard", "1")
    signed = await api.client.post("/v1/auth/signup", json={"handle": "three", "password": "long enough"})
    u3 = signed.json()["user_id"]
    for followee in ("u2", u3):
        answer = await api.client.post("/v1/follows", json={"followee_id": followee}, headers=api.auth("u1"))
        assert answer.status_code == 202, answer.text
    answer = await api.client.delete("/v1/follows/u2", headers=api.auth("u1"))
    assert answer.status_code == 202
    follows = api.log.events()[1:]
    assert [type(e) for e in follows] == [UserFollowed, UserFollowed, UserUnfollowed]
    assert [(e.data.follower_id, e.data.followee_id) for e in follows] == [  # type: ignore[union-attr]
        ("u1", "u2"), ("u1", u3), ("u1", "u2")
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("POST", "/v1/follows", {"followee_id": "u1"}, 400, "themself"),
        ("POST", "/v1/follows", {"followee_id": "ghost"}, 404, "ghost"),
        ("POST", "/v1/follows", {"followee_id": ""}, 400, "$.followee_id"),
        ("POST", "/v1/follows", {"followee_id": "u2", "actor_id": "u5"}, 403, "actor_id"),
        ("DELETE", "/v1/follows/ghost", None, 404, "ghost"),
        ("DELETE", "/v1/posts/nope", None, 404, "nope"),
        ("DELETE", "/v1/posts/p2", None, 403, "not a post of"),
        ("DELETE", "/v1/posts/p1", {"actor_id": "u2"}, 403, "actor_id"),
        ("DELETE", "/v1/posts/p1", {"what": 1}, 400, "what"),
    ],
)
async def test_refused_follows_and_deletes_append_nothing(
    api: Api, method: str, path: str, body: object, status: int, says: str
) -> None:
    theirs = PutPost(Post("p2", "u2", "theirs", 5))
    await api.store.apply([PutUser(User("u2", "two", "Two")), theirs], "s", "1")
    await api.store.apply([PutPost(Post("p1", "u1", "mine", 5))], "s", "2")
    answer = await api.client.request(method, path, json=body, headers=api.auth("u1"))
    assert answer.status_code == status
    assert says in answer.json()["error"]["message"]
    assert api.log.calls == 0


async def test_author_deletes_a_post(api: Api) -> None:
    await api.store.apply([PutPost(Post("p1", "u1", "mine", 5))], "s", "1")
    answer = await api.client.delete("/v1/posts/p1", headers=api.auth("u1"))
    assert answer.status_code == 202
    [event] = api.log.events()
    assert isinstance(event, PostDeleted) and (event.data.post_id, event.data.author_id) == ("p1", "u1")


async def test_producer_deletes_for_the_author(api: Api) -> None:
    await api.store.apply([PutPost(Post("p1", "u1", "mine", 5))], "s", "1")
    answer = await api.client.request(
        "DELETE", "/v1/posts/p1", json={"actor_id": "u1"}, headers=api.auth("loader", "producer")
    )
    assert answer.status_code == 202


# --- POST /v1/events ---------------------------------------------------------------------------


def registered(i: int) -> dict[str, object]:
    return {"type": "UserRegistered", "data": {"user_id": f"u{i}", "handle": f"user_{i}"}}


async def test_event_batch_is_appended_whole(api: Api) -> None:
    events = [registered(i) for i in range(3)]
    events.append({"type": "UserFollowed", "id": "e-mine", "ts": 1234,
                   "data": {"follower_id": "u0", "followee_id": "u1"}})
    answer = await api.client.post("/v1/events", json={"events": events}, headers=api.auth("ld", "producer"))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["accepted"] == 4 and len(body["event_ids"]) == 4
    appended = api.log.events()
    assert [e.id for e in appended] == body["event_ids"]
    assert (appended[3].id, appended[3].ts) == ("e-mine", 1234)
    assert api.log.calls == 1


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"type": "UserExploded", "data": {}}, "events[2]"),
        ({"type": "PostCreated", "data": {"post_id": "p", "author_id": "a", "body": 5}},
         "events[2]: Expected `str`"),
        ({"type": "PostCreated", "data": {"post_id": "p", "author_id": "a", "body": "b", "x": 1}}, "x"),
        ({"type": "UserFollowed", "data": {"follower_id": "a"}}, "followee_id"),
        ({"type": "UserRegistered", "data": {"user_id": "u", "handle": "u"}, "ts": -1}, "$.events[2].ts"),
        ({"type": "UserRegistered", "data": {"user_id": "u", "handle": "u"}, "extra": 1}, "extra"),
    ],
)
async def test_a_bad_event_rejects_the_whole_batch(api: Api, bad: dict[str, object], says: str) -> None:
    events = [registered(0), registered(1), bad, registered(3)]
    answer = await api.client.post("/v1/events", json={"events": events}, headers=api.auth("ld", "producer"))
    assert answer.status_code == 400
    assert says in answer.json()["error"]["message"]
    assert api.log.calls == 0


@pytest.mark.parametrize("count", [0, 501])
async def test_batch_size_is_1_to_500(api: Api, count: int) -> None:
    events = [registered(i) for i in range(count)]
    answer = await api.client.post("/v1/events", json={"events": events}, headers=api.auth("ld", "producer"))
    assert answer.status_code == 400
    assert "$.events" in answer.json()["error"]["message"]
    assert api.log.calls == 0


# --- idempotency and a refusing log -------------------------------------------------------------


async def test_idempotency_key_survives_a_restart(tmp_path: Path) -> None:
    key = {"Idempotency-Key": "post-42"}
    async with running_api(tmp_path) as api:
        first = await api.client.post("/v1/posts", json={"body": "once"}, headers={**api.auth("u1"), **key})
        assert first.status_code == 202
        again = await api.client.post("/v1/posts", json={"body": "once"}, headers={**api.auth("u1"), **key})
        assert (again.status_code, again.json()) == (202, first.json())
        assert again.headers["Idempotent-Replayed"] == "true"
        assert len(api.log.appended) == 1
    async with running_api(tmp_path) as api:
        retry = await api.client.post("/v1/posts", json={"body": "once"}, headers={**api.auth("u1"), **key})
        assert (retry.status_code, retry.json()) == (202, first.json())
        # Another user's same key is another request.
        other = await api.client.post("/v1/posts", json={"body": "once"}, headers={**api.auth("u2"), **key})
        assert other.status_code == 202 and other.json() != first.json()
        # The same key for a different request is a client bug: say so.
        reused = await api.client.post("/v1/posts", json={"body": "twice"}, headers={**api.auth("u1"), **key})
        assert reused.status_code == 422
        assert api.log.calls == 1


async def test_refusing_log_answers_503_and_appends_nothing(api: Api) -> None:
    key = {"Idempotency-Key": "k1"}
    api.log.refusing = True
    answer = await api.client.post("/v1/posts", json={"body": "hi"}, headers={**api.auth("u1"), **key})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["error"]["code"] == "log_unavailable"
    assert api.log.appended == []
    # The refused request left its key free: the retry goes through, once.
    api.log.refusing = False
    retry = await api.client.post("/v1/posts", json={"body": "hi"}, headers={**api.auth("u1"), **key})
    assert retry.status_code == 202
    assert len(api.log.appended) == 1


async def test_refusing_log_fails_an_event_batch_whole(api: Api) -> None:
    api.log.refusing = True
    events = {"events": [registered(i) for i in range(5)]}
    answer = await api.client.post("/v1/events", json=events, headers=api.auth("ld", "producer"))
    assert answer.status_code == 503
    assert api.log.appended == []


async def test_unknown_route_answers_in_the_error_shape(api: Api) -> None:
    answer = await api.client.get("/v1/nothing")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


async def test_concurrent_retries_append_once(api: Api) -> None:
    headers = {**api.auth("u1"), "Idempotency-Key": "burst"}
    answers = await asyncio.gather(
        *(api.client.post("/v1/posts", json={"body": "once"}, headers=headers) for _ in range(5))
    )
    assert len(api.log.appended) == 1
    done = [a for a in answers if a.status_code == 202]
    # The others either replayed the first answer or were told it is still in progress.
    assert done and all(a.json() == done[0].json() for a in done)
    assert all(a.status_code == 409 and a.headers["Retry-After"] for a in answers if a.status_code != 202)
