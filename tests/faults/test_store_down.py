"""The store refusing writes for a while, while events flow: retried with backoff and jitter, nothing
lost (every projection equals the reference model afterwards), and the API stays up, saying it is
not ready while the store refuses.

DynamoDB: a wrapper around the real (dynalite) client answers ProvisionedThroughputExceededException
or ThrottlingException to every call while `refusing`. SQLite: another connection holds the
database's write lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import ClientError

from api.app import create_app
from api.auth import Tokens
from fanline.emulators import Emulator
from processors.runner import Runner
from projections.dynamodb_store import DynamoDBStore
from projections.memory_accounts import MemoryAccounts
from projections.sqlite_store import SQLiteStore
from projections.store import Store
from streams.consumer import Consumer
from streams.log import Appended, Log
from streams.sqlite_leases import SQLiteLeaseStore
from streams.sqlite_log import SQLiteLog
from tests.api.conftest import CHEAP_HASHER, SECRET
from tests.faults.support import World, fold_settings, last_per_shard, wait_applied
from tests.faults.test_kill import feed

CODES = ("ProvisionedThroughputExceededException", "ThrottlingException")


class Throttling:
    """The real client, except that every call raises a throttling error while `refusing`."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.refusing = False
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if not callable(real) or name.startswith("_"):
            return real

        async def call(**request: Any) -> Any:
            if self.refusing:
                self.refused += 1
                code = CODES[self.refused % 2]
                raise ClientError({"Error": {"Code": code, "Message": "injected"}}, name)  # type: ignore[arg-type]
            return await real(**request)

        return call


@asynccontextmanager
async def processing(log: Log, store: Store, leases: SQLiteLeaseStore) -> AsyncIterator[None]:
    consumer = Consumer(log, leases, Runner(store, fold_settings()).handle, worker_id="w", idle_wait_s=0.05,
                        lease_timeout_s=30, retry_initial_s=0.05, retry_max_s=0.5)
    task = asyncio.create_task(consumer.run())
    try:
        yield
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 20)


async def test_dynamodb_throttling_is_retried_nothing_is_lost_and_the_api_says_not_ready(
    dynalite: Emulator, tmp_path: Path
) -> None:
    connected = await DynamoDBStore.connect(endpoint_url=dynalite.endpoint_url,
                                            table_prefix=f"thr-{uuid.uuid4().hex[:6]}-")
    await connected.create_tables()
    throttling = Throttling(connected.client)
    # Short backoff, so the store gives up (StoreUnavailable) and the consumer retries the batch too.
    store = DynamoDBStore(throttling, connected.prefix, attempts=3, max_wait_s=0.05)
    log = SQLiteLog(tmp_path / "log.db", shard_count=4)
    leases = SQLiteLeaseStore(tmp_path / "leases.db")
    accounts = MemoryAccounts()
    app = create_app(log, store, accounts, secret=SECRET, hasher=CHEAP_HASHER)
    world = World(seed=9, namespaces=4, ops_each=40, prefix="thr")
    appended: list[Appended] = []
    try:
        async with (httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
                    processing(log, store, leases)):
            assert (await client.get("/readyz")).status_code == 200
            feeding = asyncio.create_task(feed(log, world.records(), appended, 10, 0.05))
            await asyncio.sleep(0.3)
            throttling.refusing = True
            await asyncio.sleep(1.5)
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert "store" in ready.json()["error"]["message"]
            assert (await client.get("/healthz")).status_code == 200  # up, only not ready
            auth = {"Authorization": f"Bearer {Tokens(SECRET).issue('x')}"}
            timeline = await client.get("/v1/users/x/timeline", headers=auth)
            assert timeline.status_code == 503 and timeline.headers["Retry-After"]
            refused_while_down = throttling.refused
            throttling.refusing = False
            await feeding
            await wait_applied(store, last_per_shard(appended), timeout_s=40)
            assert (await client.get("/readyz")).status_code == 200
        assert refused_while_down > 10
        await world.check(store)
        assert await store.dead_letters(10) == []
    finally:
        await app.state.batcher.close()
        await leases.close()
        await log.close()
        await connected.close()


async def test_a_locked_sqlite_store_is_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", attempts=3)
    await store.ping()  # creates the schema
    log = SQLiteLog(tmp_path / "log.db", shard_count=4)
    leases = SQLiteLeaseStore(tmp_path / "leases.db")
    world = World(seed=10, namespaces=4, ops_each=40, prefix="lck")
    appended: list[Appended] = []
    locker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    try:
        async with processing(log, store, leases):
            feeding = asyncio.create_task(feed(log, world.records(), appended, 10, 0.05))
            await asyncio.sleep(0.3)
            locker.execute("BEGIN EXCLUSIVE")
            marks = await store.applied()  # readers go on (WAL)
            await asyncio.sleep(1.5)
            assert await store.applied() == marks  # no batch got through the lock
            locker.execute("COMMIT")
            await feeding
            await wait_applied(store, last_per_shard(appended), timeout_s=40)
        await world.check(store)
    finally:
        locker.close()
        await leases.close()
        await store.close()
        await log.close()
