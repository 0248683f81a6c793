"""The AccountStore contract, run against every adapter (DynamoDB on the dynalite fixture)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.accounts import Account, AccountStore, IdempotencyRecord
from fanline.emulators import Emulator
from projections.dynamodb_accounts import DynamoDBAccounts
from projections.memory_accounts import MemoryAccounts
from projections.sqlite_accounts import SQLiteAccounts
from tests.projections.accounts_contract import AccountsContract


class TestMemoryAccounts(AccountsContract):
    @pytest.fixture
    def accounts(self) -> AccountStore:
        return MemoryAccounts()


class TestSQLiteAccounts(AccountsContract):
    @pytest.fixture
    async def accounts(self, tmp_path: Path) -> AsyncIterator[AccountStore]:
        store = SQLiteAccounts(tmp_path / "accounts.db")
        yield store
        await store.close()


async def test_sqlite_accounts_survive_a_reopen(tmp_path: Path) -> None:
    first = SQLiteAccounts(tmp_path / "accounts.db")
    await first.create(Account("alice", "u1", "h"))
    await first.claim(IdempotencyRecord("k", "f", 1), 1000)
    await first.complete("k", 202, b"{}")
    await first.close()
    second = SQLiteAccounts(tmp_path / "accounts.db")
    assert await second.by_handle("alice") == Account("alice", "u1", "h")
    stored = await second.claim(IdempotencyRecord("k", "f", 2), 1000)
    assert stored == IdempotencyRecord("k", "f", 1, 202, b"{}")
    await second.close()


class TestDynamoDBAccounts(AccountsContract):
    @pytest.fixture
    async def accounts(self, dynalite: Emulator) -> AsyncIterator[AccountStore]:
        # A fresh table prefix per test: an empty store without deleting tables.
        prefix = f"t{uuid.uuid4().hex[:8]}-"
        store = await DynamoDBAccounts.connect(prefix, endpoint_url=dynalite.endpoint_url)
        await store.ensure_tables()
        yield store
        await store.close()
