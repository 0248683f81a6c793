"""Sign-up, login and bearer tokens (JWT, HS256 with the deployment's secret).

Other routes call `authenticate(request)` for the caller's `Principal` and `acting_user(...)`
for the user a write acts as: a `user` token acts only as its own `sub`; a `producer` token
(services, loaders, load tests) may name any user with "actor_id". The app factory puts the
`Tokens` on `app.state.tokens`, where `authenticate` finds them.

Passwords are hashed with argon2 (slow and salted) in a worker thread, and never leave this
module: the UserRegistered event carries only user_id, handle and display_name.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import jwt
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.accounts import Account, AccountStore
from api.bodies import read_json
from api.errors import ApiError

Scope = Literal["user", "producer"]
SCOPES: tuple[Scope, ...] = ("user", "producer")
# A day: long enough for a session of load tests, short enough that a leaked token expires.
TOKEN_TTL_S = 24 * 3600
# Verified tokens remembered (least recently used dropped first). Checking a JWT's signature
# costs ~35 us, as much as the rest of a static answer; a client sends the same token with
# every request, so a hit is the common case. Only tokens that verified are kept, each until
# its own exp.
VERIFIED_CACHE_SIZE = 10_000

Handle = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{3,30}$")]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=1024)]
DisplayName = Annotated[str, msgspec.Meta(max_length=100)]


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    scope: Scope


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="fanline"'})


class Tokens:
    """Mints and checks the deployment's bearer tokens."""

    def __init__(self, secret: str, ttl_s: int = TOKEN_TTL_S, cache_size: int = VERIFIED_CACHE_SIZE) -> None:
        if not secret:
            raise ValueError("the signing secret is empty")
        self._secret = secret
        self._ttl_s = ttl_s
        self._cache_size = cache_size
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def issue(self, user_id: str, scope: Scope = "user", ttl_s: int | None = None) -> str:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        exp = int(time.time()) + (self._ttl_s if ttl_s is None else ttl_s)
        return jwt.encode({"sub": user_id, "scope": scope, "exp": exp}, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        # Valid while now < exp, as PyJWT has it (no leeway); past it, the full check answers 401.
        if hit is not None and time.time() < hit[1]:
            self._verified.move_to_end(token)
            return hit[0]
        principal, exp = self._check(token)
        self._verified[token] = (principal, exp)
        self._verified.move_to_end(token)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    def _check(self, token: str) -> tuple[Principal, float]:
        """The token's principal and exp, or 401: signature, claims, expiry."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["sub", "scope", "exp"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise _unauthorized("bearer token has expired; get a new one") from exc
        except jwt.InvalidSignatureError as exc:
            raise _unauthorized("bearer token signature does not match (tampered or another secret)") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthorized(f"bearer token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"bearer token is not valid: {exc}") from exc
        scope, sub = claims["scope"], claims["sub"]
        if scope not in SCOPES:
            raise _unauthorized(f"bearer token scope must be one of {SCOPES}, got {scope!r}")
        if not isinstance(sub, str) or not sub:
            raise _unauthorized("bearer token subject must be a non-empty user id")
        return Principal(sub, scope), float(claims["exp"])


def authenticate(request: Request) -> Principal:
    """The caller of `request`; 401 for a missing, malformed, expired or tampered token."""
    header = request.headers.get("authorization")
    if header is None:
        raise _unauthorized("missing Authorization header; send 'Authorization: Bearer <token>'")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise _unauthorized("Authorization header must be 'Bearer <token>'")
    tokens: Tokens = request.app.state.tokens
    return tokens.verify(token.strip())


def acting_user(principal: Principal, actor_id: str | None) -> str:
    """The user a write acts as: a user only as itself, a producer as `actor_id` (or itself)."""
    if actor_id is None or actor_id == principal.user_id:
        return principal.user_id
    if principal.scope != "producer":
        raise ApiError(403, "forbidden", "actor_id: a user token may act only as its own user")
    return actor_id


def require_producer(principal: Principal) -> None:
    if principal.scope != "producer":
        raise ApiError(403, "forbidden", "this route needs a producer token")


# --- sign-up and login -------------------------------------------------------------------------


class SignupBody(msgspec.Struct, forbid_unknown_fields=True):
    handle: Handle
    password: Password
    display_name: DisplayName = ""


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    handle: str
    password: str


def _login_failed() -> ApiError:
    # One answer for a wrong handle and a wrong password: no way to probe which handles exist.
    return _unauthorized("handle or password is wrong")


# What sign-up needs from the write side: append UserRegistered(user_id, handle, display_name)
# and answer its consistency token; raises ApiError (503) when the log refuses.
Registrar = Callable[[str, str, str], Awaitable[str]]


_encode = msgspec.json.Encoder().encode


def auth_routes(
    accounts: AccountStore,
    tokens: Tokens,
    register: Registrar,
    hasher: PasswordHasher,
    new_id: Callable[[], str],
) -> list[Route]:
    # Login with an unknown handle still verifies a hash, so both failures take as long.
    dummy_hash = hasher.hash("not a password of anyone")

    async def signup(request: Request) -> Response:
        body = await read_json(request, SignupBody)
        password_hash = await asyncio.to_thread(hasher.hash, body.password)
        user_id = new_id()
        if not await accounts.create(Account(body.handle, user_id, password_hash)):
            raise ApiError(409, "handle_taken", f"handle: {body.handle!r} is taken")
        try:
            consistency_token = await register(user_id, body.handle, body.display_name)
        except Exception:
            # Nothing half-written: no account without its UserRegistered event. (Not on
            # cancellation: the append may still land, and then the account must stay.)
            await accounts.delete(body.handle)
            raise
        answer = {"user_id": user_id, "token": tokens.issue(user_id), "consistency_token": consistency_token}
        return Response(_encode(answer), status_code=201, media_type="application/json")

    async def login(request: Request) -> Response:
        body = await read_json(request, LoginBody)
        account = await accounts.by_handle(body.handle)
        try:
            await asyncio.to_thread(
                hasher.verify, account.password_hash if account else dummy_hash, body.password
            )
        except (VerificationError, InvalidHashError) as exc:
            raise _login_failed() from exc
        if account is None:
            raise _login_failed()
        answer = {"user_id": account.user_id, "token": tokens.issue(account.user_id)}
        return Response(_encode(answer), media_type="application/json")

    return [
        Route("/v1/auth/signup", signup, methods=["POST"]),
        Route("/v1/auth/login", login, methods=["POST"]),
    ]
