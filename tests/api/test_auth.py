"""Sign-up, login and bearer tokens."""

from __future__ import annotations

import time

import jwt
import pytest

from api.auth import Principal, acting_user
from api.errors import ApiError
from streams.events import UserRegistered
from tests.api.conftest import SECRET, Api


async def signup(api: Api, handle: str = "alice", password: str = "correct horse") -> dict[str, str]:
    answer = await api.client.post("/v1/auth/signup", json={"handle": handle, "password": password})
    assert answer.status_code == 201, answer.text
    body: dict[str, str] = answer.json()
    return body


async def test_signup_answers_a_token_and_appends_the_user_without_password(api: Api) -> None:
    answer = await api.client.post(
        "/v1/auth/signup", json={"handle": "alice", "password": "correct horse", "display_name": "Alice"}
    )
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"user_id", "token", "consistency_token"}
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == body["user_id"] and claims["scope"] == "user"
    [event] = api.log.events()
    assert isinstance(event, UserRegistered)
    data = event.data
    assert (data.user_id, data.handle, data.display_name) == (body["user_id"], "alice", "Alice")
    assert b"correct horse" not in api.log.appended[0][1]
    assert await api.accounts.exists(body["user_id"])


async def test_taken_handle_is_409_and_appends_nothing(api: Api) -> None:
    await signup(api)
    answer = await api.client.post("/v1/auth/signup", json={"handle": "alice", "password": "another one"})
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "handle_taken"
    assert len(api.log.appended) == 1


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"handle": "Al", "password": "long enough"}, "$.handle"),
        ({"handle": "has space", "password": "long enough"}, "$.handle"),
        ({"handle": "alice", "password": "short"}, "$.password"),
        ({"handle": "alice", "password": "long enough", "admin": True}, "admin"),
        ({"password": "long enough"}, "handle"),
    ],
)
async def test_bad_signup_is_400_naming_the_field(api: Api, body: dict[str, object], names: str) -> None:
    answer = await api.client.post("/v1/auth/signup", json=body)
    assert answer.status_code == 400
    assert names in answer.json()["error"]["message"]
    assert api.log.appended == []


async def test_login_answers_the_same_user(api: Api) -> None:
    created = await signup(api)
    answer = await api.client.post("/v1/auth/login", json={"handle": "alice", "password": "correct horse"})
    assert answer.status_code == 200
    assert answer.json()["user_id"] == created["user_id"]
    mine = await api.client.post("/v1/posts", json={"body": "hi"},
                                 headers={"Authorization": f"Bearer {answer.json()['token']}"})
    assert mine.status_code == 202


async def test_wrong_handle_and_wrong_password_get_the_same_answer(api: Api) -> None:
    await signup(api)
    login = "/v1/auth/login"
    wrong_password = await api.client.post(login, json={"handle": "alice", "password": "nope nope"})
    wrong_handle = await api.client.post(login, json={"handle": "bob", "password": "correct horse"})
    assert wrong_password.status_code == wrong_handle.status_code == 401
    assert wrong_password.json() == wrong_handle.json()


async def test_signup_on_a_refusing_log_is_503_and_keeps_no_account(api: Api) -> None:
    api.log.refusing = True
    answer = await api.client.post("/v1/auth/signup", json={"handle": "alice", "password": "correct horse"})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert await api.accounts.by_handle("alice") is None
    api.log.refusing = False
    await signup(api)


def token(claims: dict[str, object], secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


LATER = int(time.time()) + 3600


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "missing Authorization"),
        ({"Authorization": "Basic abc"}, "Bearer"),
        ({"Authorization": "Bearer not-a-jwt"}, "not valid"),
        (token({"sub": "u1", "scope": "user", "exp": int(time.time()) - 10}), "expired"),
        (token({"sub": "u1", "scope": "user", "exp": LATER}, "y" * 32), "signature"),
        (token({"sub": "u1", "scope": "admin", "exp": LATER}), "scope"),
        (token({"sub": "u1", "exp": LATER}), "scope"),
        (token({"sub": "u1", "scope": "user"}), "exp"),
    ],
)
async def test_bad_tokens_are_401_with_a_reason(api: Api, headers: dict[str, str], why: str) -> None:
    answer = await api.client.post("/v1/posts", json={"body": "hi"}, headers=headers)
    assert answer.status_code == 401
    assert why in answer.json()["error"]["message"]
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.log.appended == []


async def test_tampered_token_is_401(api: Api) -> None:
    good = api.auth("u1")["Authorization"]
    header, _, signature = good.removeprefix("Bearer ").split(".")
    forged = jwt.encode({"sub": "u2", "scope": "producer", "exp": LATER}, "x" * 32, algorithm="HS256")
    tampered = f"{header}.{forged.split('.')[1]}.{signature}"
    headers = {"Authorization": f"Bearer {tampered}"}
    answer = await api.client.post("/v1/posts", json={"body": "hi"}, headers=headers)
    assert answer.status_code == 401
    assert "signature" in answer.json()["error"]["message"]


async def test_user_token_may_not_use_producer_routes(api: Api) -> None:
    events = {"events": [{"type": "UserRegistered", "data": {"user_id": "u9", "handle": "nine"}}]}
    answer = await api.client.post("/v1/events", json=events, headers=api.auth("u1"))
    assert answer.status_code == 403
    assert api.log.appended == []


def test_acting_user() -> None:
    user, producer = Principal("u1", "user"), Principal("loader", "producer")
    assert acting_user(user, None) == "u1"
    assert acting_user(user, "u1") == "u1"
    assert acting_user(producer, "u7") == "u7"
    assert acting_user(producer, None) == "loader"
    with pytest.raises(ApiError) as refused:
        acting_user(user, "u2")
    assert refused.value.status == 403
