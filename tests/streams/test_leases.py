"""The LeaseStore contract, run against every adapter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fanline.emulators import Emulator
from streams.dynamodb_leases import DynamoDBLeaseStore
from streams.leases import LeaseStore
from streams.sqlite_leases import SQLiteLeaseStore
from tests.streams.lease_contract import LeaseContract


class TestSQLiteLeaseStore(LeaseContract):
    @pytest.fixture
    async def leases(self, tmp_path: Path) -> AsyncIterator[LeaseStore]:
        store = SQLiteLeaseStore(tmp_path / "leases.sqlite")
        yield store
        await store.close()

    @pytest.fixture
    async def other(self, leases: LeaseStore, tmp_path: Path) -> AsyncIterator[LeaseStore]:
        store = SQLiteLeaseStore(tmp_path / "leases.sqlite")
        yield store
        await store.close()


class TestDynamoDBLeaseStore(LeaseContract):
    @pytest.fixture
    def table(self) -> str:
        return f"leases-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    async def leases(self, dynalite: Emulator, table: str) -> AsyncIterator[LeaseStore]:
        store = await DynamoDBLeaseStore.connect(table, endpoint_url=dynalite.endpoint_url)
        await store.ensure_table()
        yield store
        await store.close()
        # A client of its own: the test may have closed the store's.
        cleanup = await DynamoDBLeaseStore.connect(table, endpoint_url=dynalite.endpoint_url)
        await cleanup.client.delete_table(TableName=table)
        await cleanup.close()

    @pytest.fixture
    async def other(self, leases: LeaseStore, dynalite: Emulator, table: str) -> AsyncIterator[LeaseStore]:
        store = await DynamoDBLeaseStore.connect(table, endpoint_url=dynalite.endpoint_url)
        yield store
        await store.close()


async def test_ensure_table_is_idempotent(dynalite: Emulator) -> None:
    store = await DynamoDBLeaseStore.connect("leases-twice", endpoint_url=dynalite.endpoint_url)
    try:
        await store.ensure_table()
        await store.ensure_table()
        assert await store.list() == []
    finally:
        await store.close()
