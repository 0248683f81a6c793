"""An API over real embedded adapters in a temp dir: SQLite log (spied), memory store, SQLite accounts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from starlette.applications import Starlette

from api.app import create_app
from api.auth import Scope, Tokens
from projections.memory_store import MemoryStore
from projections.sqlite_accounts import SQLiteAccounts
from streams.sqlite_log import SQLiteLog
from tests.api.fakes import SpyLog

SECRET = "test-secret-of-enough-length-for-hs256"
# Cheap argon2 parameters: the tests check behaviour, not the hash's cost.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@dataclass
class Api:
    app: Starlette
    client: httpx.AsyncClient
    log: SpyLog
    store: MemoryStore
    accounts: SQLiteAccounts

    def auth(self, user_id: str, scope: Scope = "user") -> dict[str, str]:
        return {"Authorization": f"Bearer {Tokens(SECRET).issue(user_id, scope)}"}


@asynccontextmanager
async def running_api(
    data_dir: Path, store: MemoryStore | None = None, rate_limit_per_s: int = 0
) -> AsyncIterator[Api]:
    """An app over files in `data_dir`; leaving the block closes everything (a restart reopens)."""
    log = SpyLog(SQLiteLog(data_dir / "log.db", shard_count=4))
    accounts = SQLiteAccounts(data_dir / "accounts.db")
    store = store or MemoryStore()
    app = create_app(log, store, accounts, secret=SECRET, hasher=CHEAP_HASHER,
                     rate_limit_per_s=rate_limit_per_s)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fanline.test") as client:
        try:
            yield Api(app, client, log, store, accounts)
        finally:
            await app.state.batcher.close()
            await accounts.close()
            await log.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as running:
        yield running
