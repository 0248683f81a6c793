"""Wiring: Settings choose the embedded SQLite adapters or the AWS ones (here on the emulators)."""

from __future__ import annotations

import uuid
from pathlib import Path

from api.accounts import Account
from fanline.emulators import Emulator
from fanline.settings import Settings
from fanline.wiring import fold_settings, open_accounts, open_leases, open_log, open_store
from projections.dynamodb_accounts import DynamoDBAccounts
from projections.dynamodb_store import DynamoDBStore
from projections.sqlite_accounts import SQLiteAccounts
from projections.sqlite_store import SQLiteStore
from streams.dynamodb_leases import DynamoDBLeaseStore
from streams.kinesis_log import KinesisLog
from streams.log import Position
from streams.sqlite_leases import SQLiteLeaseStore
from streams.sqlite_log import SQLiteLog


async def exercise(settings: Settings) -> list[type]:
    """Open every adapter, use it once, close it; the adapters' types."""
    log = await open_log(settings)
    [appended] = await log.append([("k", b"hello")])
    read = await log.reader(appended.shard_id, Position.at(appended.sequence)).read(1)
    assert read.records[0].data == b"hello"
    store = await open_store(settings)
    await store.ping()
    leases = await open_leases(settings)
    await leases.ensure(await log.shards())
    assert len(await leases.list()) == len(await log.shards()) == settings.shards
    accounts = await open_accounts(settings)
    assert await accounts.create(Account("alice", "u1", "h"))
    kinds = [type(log), type(store), type(leases), type(accounts)]
    for closing in (log, store, leases, accounts):
        await closing.close()
    return kinds


async def test_sqlite_backend_keeps_files_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.load({"data_dir": tmp_path / "data", "shards": 2}, environ={})
    kinds = await exercise(settings)
    assert kinds == [SQLiteLog, SQLiteStore, SQLiteLeaseStore, SQLiteAccounts]
    files = {p.name for p in (tmp_path / "data").iterdir()}
    assert {"log.db", "store.db", "leases.db", "accounts.db"} <= files


async def test_aws_backend_creates_what_is_missing_on_the_emulators(
    kinesalite: Emulator, dynalite: Emulator
) -> None:
    unique = uuid.uuid4().hex[:8]
    settings = Settings.load(
        {"backend": "aws", "endpoint_url": dynalite.endpoint_url,
         "kinesis_endpoint_url": kinesalite.endpoint_url, "stream_name": f"wiring-{unique}",
         "table_prefix": f"wiring-{unique}-", "shards": 2},
        environ={},
    )
    kinds = await exercise(settings)
    assert kinds == [KinesisLog, DynamoDBStore, DynamoDBLeaseStore, DynamoDBAccounts]


def test_settings_from_the_environment(tmp_path: Path) -> None:
    environ = {"FANLINE_DATA_DIR": str(tmp_path), "FANLINE_STRATEGY": "push", "FANLINE_TIMELINE_CAP": "20"}
    settings = Settings.load({"data_dir": None}, environ=environ)
    assert settings.data_dir == tmp_path
    folds = fold_settings(settings)
    assert (folds.strategy, folds.timeline_cap, folds.celebrity_threshold) == ("push", 20, 50_000)
