"""The verified-token cache of api.auth.Tokens: hits skip the signature check, exp still rules."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from api.auth import Principal, Tokens
from api.errors import ApiError

SECRET = "test-secret-of-the-token-cache-0123456789"


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every full check (jwt.decode) made, by token."""
    calls: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def test_a_verified_token_is_answered_from_the_cache(decodes: list[str]) -> None:
    tokens = Tokens(SECRET)
    token = tokens.issue("u1", "producer")
    assert [tokens.verify(token) for _ in range(3)] == [Principal("u1", "producer")] * 3
    assert decodes == [token]


def test_a_cached_token_is_refused_once_expired(decodes: list[str]) -> None:
    tokens = Tokens(SECRET)
    token = tokens.issue("u1", ttl_s=1)
    assert tokens.verify(token) == Principal("u1", "user")
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    with pytest.raises(ApiError) as refused:
        tokens.verify(token)
    assert refused.value.status == 401
    assert "expired" in refused.value.message


def test_bad_tokens_are_checked_every_time_and_never_kept(decodes: list[str]) -> None:
    tokens = Tokens(SECRET)
    forged = Tokens("another-secret-entirely-0123456789").issue("u1", "producer")
    for _ in range(2):
        with pytest.raises(ApiError, match="signature"):
            tokens.verify(forged)
    assert decodes == [forged, forged]


def test_the_cache_is_bounded_least_recently_used_first(decodes: list[str]) -> None:
    tokens = Tokens(SECRET, cache_size=2)
    a, b, c = (tokens.issue(u) for u in ("a", "b", "c"))
    for token in (a, b, a, c):  # a is used again before c arrives: b is the one dropped
        tokens.verify(token)
    decodes.clear()
    for token in (a, c, b):
        tokens.verify(token)
    assert decodes == [b]
