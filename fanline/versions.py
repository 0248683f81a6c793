"""Projection versions on each backend: where a version's store and leases live, the pointer,
the archive, and dropping a version. `fanline.wiring.open_store`/`open_leases` follow the pointer.

sqlite: version "" is `store.db` and `leases.db`, version "r1" `store-r1.db` and `leases-r1.db`,
the pointer `projections.json`, the archive `archive/` and its leases `archive-leases.db`, all
in the data directory. aws: version "" is the tables `<prefix><table>` and `<prefix>leases`,
version "r1" `<prefix>r1-<table>` and `<prefix>r1-leases`; the pointer is the table
`<prefix>projection_versions`; the archive is S3 (FANLINE_ARCHIVE_BUCKET) with its leases in
`<prefix>archive-leases`.

Each version is folded and read with the fold settings it was built with, which the pointer
records (`version_fold`); the environment's count only for a version without a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import msgspec
from botocore.exceptions import ClientError

from fanline.settings import Settings
from processors.settings import FoldSettings
from projections.dynamodb_store import DynamoDBStore
from projections.dynamodb_versions import DynamoDBPointer
from projections.sqlite_store import SQLiteStore
from projections.store import Store
from projections.tables import TABLES
from projections.versions import FilePointer, VersionPointer, Versions, check_version
from streams.archive import Archive, LocalArchive
from streams.consumer import Consumer
from streams.dynamodb_leases import DynamoDBLeaseStore
from streams.leases import LeaseStore
from streams.s3_archive import S3Archive
from streams.sqlite_leases import SQLiteLeaseStore

POINTER_FILE = "projections.json"
logger = logging.getLogger(__name__)
POINTER_CHECK_S = 1.0  # how often the processes look at the pointer for a switch


def fold_record(fold: FoldSettings) -> dict[str, str | int]:
    """`fold` as the pointer records it (`Versions.fold`)."""
    return dataclasses.asdict(fold)


def version_fold(versions: Versions, version: str, environment: FoldSettings) -> FoldSettings:
    """The fold settings `version` was built with, or `environment` when none were recorded.

    When they differ from the environment's, the version's win (a process started before a
    replay switched to other settings must fold and read the new version as it was built) and
    a warning says so.
    """
    recorded = versions.fold.get(version)
    if recorded is None:
        return environment
    try:
        fold = msgspec.convert(recorded, FoldSettings)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ValueError(f"projection version {version!r}: bad fold settings in the pointer: {exc}") from exc
    if fold != environment:
        names = [field.name for field in dataclasses.fields(fold)]
        differ = ", ".join(f"{name}={getattr(fold, name)} (environment: {getattr(environment, name)})"
                           for name in names if getattr(fold, name) != getattr(environment, name))
        logger.warning("projection version %r was built with other fold settings than the environment's; "
                       "using the version's: %s", version, differ)
    return fold


def _creates(settings: Settings) -> bool:
    return settings.endpoint_url is not None or settings.kinesis_endpoint_url is not None


def _suffix(version: str) -> str:
    return f"-{check_version(version)}" if version else ""


def store_path(settings: Settings, version: str) -> Path:
    return settings.data_dir / f"store{_suffix(version)}.db"


def leases_path(settings: Settings, version: str) -> Path:
    return settings.data_dir / f"leases{_suffix(version)}.db"


def table_prefix(settings: Settings, version: str) -> str:
    return settings.table_prefix + (f"{check_version(version)}-" if version else "")


async def open_pointer(settings: Settings, *, create: bool = False) -> VersionPointer:
    """`create`: make the pointer's table on an emulator (only a replay writes the pointer)."""
    if settings.backend == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return FilePointer(settings.data_dir / POINTER_FILE)
    pointer = await DynamoDBPointer.connect(endpoint_url=settings.endpoint_url, region=settings.region,
                                            table_prefix=settings.table_prefix)
    if create and _creates(settings):
        await pointer.ensure_table()
    return pointer


async def active_version(settings: Settings) -> str:
    pointer = await open_pointer(settings)
    try:
        return (await pointer.get()).active
    finally:
        await pointer.close()


async def open_store_version(settings: Settings, version: str, *, cache_mib: int = 0) -> Store:
    """`cache_mib`: SQLite's page cache for this store (a replay's big writes want a big one)."""
    if settings.backend == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(store_path(settings, version), cache_mib=cache_mib)
    store = await DynamoDBStore.connect(endpoint_url=settings.endpoint_url, region=settings.region,
                                        table_prefix=table_prefix(settings, version))
    if _creates(settings) or version:
        # A new version's tables are the replay's to create (on AWS too: it needs create rights).
        await store.create_tables()
    return store


async def open_leases_version(settings: Settings, version: str) -> LeaseStore:
    if settings.backend == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return SQLiteLeaseStore(leases_path(settings, version))
    leases = await DynamoDBLeaseStore.connect(table_prefix(settings, version) + "leases",
                                              endpoint_url=settings.endpoint_url, region=settings.region)
    if _creates(settings) or version:
        await leases.ensure_table()
    return leases


def terraforms(settings: Settings, version: str) -> bool:
    """The first version's tables are Terraform's on AWS (infra/terraform), not the replay's; on
    an emulator the services create them at start, as Terraform would: the same rule for both."""
    return settings.backend == "aws" and version == ""


async def drop_version(settings: Settings, version: str) -> None:
    """Delete a version's store and leases (never the active one: the caller checks; never
    Terraform's tables: see `terraforms`)."""
    if terraforms(settings, version):
        raise ValueError(f"projection version {version!r}: its tables are Terraform's; not deleting them")
    if settings.backend == "sqlite":
        for path in (store_path(settings, version), leases_path(settings, version)):
            # ".bulk": what a bulk replay killed while writing left (projections.sqlite_bulk)
            for extra in ("", "-wal", "-shm", "-journal", ".bulk"):
                Path(f"{path}{extra}").unlink(missing_ok=True)
        return
    store = await DynamoDBStore.connect(endpoint_url=settings.endpoint_url, region=settings.region,
                                        table_prefix=table_prefix(settings, version))
    try:
        names = [store.table(spec) for spec in TABLES] + [table_prefix(settings, version) + "leases"]
        for name in names:
            try:
                await store.client.delete_table(TableName=name)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
        for name in names:
            waiter = store.client.get_waiter("table_not_exists")
            await waiter.wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    finally:
        await store.close()


async def open_archive(settings: Settings) -> Archive | None:
    """The archive the settings name; None on aws without FANLINE_ARCHIVE_BUCKET."""
    if settings.backend == "sqlite":
        return LocalArchive(settings.data_dir / "archive")
    if not settings.archive_bucket:
        return None
    archive = await S3Archive.connect(settings.archive_bucket,
                                      endpoint_url=settings.s3_endpoint_url or settings.endpoint_url,
                                      region=settings.region)
    if settings.s3_endpoint_url is not None:
        await archive.ensure_bucket()
    return archive


async def open_archive_leases(settings: Settings) -> LeaseStore:
    if settings.backend == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return SQLiteLeaseStore(settings.data_dir / "archive-leases.db")
    leases = await DynamoDBLeaseStore.connect(settings.table_prefix + "archive-leases",
                                              endpoint_url=settings.endpoint_url, region=settings.region)
    if _creates(settings):
        await leases.ensure_table()
    return leases


async def run_until_switch(settings: Settings, version: str, consumer: Consumer, who: str) -> None:
    """Run `consumer` (of `version`'s leases) until it stops: on its own, or once the pointer
    names another active version (it then finishes its batch, checkpoints and releases)."""
    watcher = asyncio.create_task(_stop_at_switch(settings, version, consumer.stop, who))
    try:
        await consumer.run()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _stop_at_switch(settings: Settings, version: str, stop: Callable[[], None], who: str) -> None:
    """Call `stop` once the pointer names an active version other than `version` (looked at
    once per POINTER_CHECK_S; a pointer that cannot be read is logged and looked at again)."""
    pointer = await open_pointer(settings)
    try:
        while True:
            await asyncio.sleep(POINTER_CHECK_S)
            try:
                active = (await pointer.get()).active
            except Exception:
                logger.exception("%s: the version pointer could not be read", who)
                continue
            if active != version:
                logger.info("%s: projection version %r replaces %r", who, active, version)
                stop()
                return
    finally:
        await pointer.close()
