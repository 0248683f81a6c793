"""Wiring: the adapters a Settings asks for.

backend "sqlite" (the default): one SQLite file each under `settings.data_dir` — log.db, store.db,
leases.db, accounts.db. backend "aws": Kinesis and DynamoDB at `settings.endpoint_url` (an
emulator; Kinesis at `kinesis_endpoint_url` when that is set), or AWS itself when both are None.
Against an emulator the stream and tables are created when missing; on AWS they come from
Terraform (infra/), so nothing here needs create rights.

Each `open_*` answers an open adapter; the caller closes it.

The graph projection (FANLINE_GRAPH, off by default) has its own leases and checkpoints:
graph-leases.db (graph-leases-r1.db, ... per projection version: fanline.graph), or the table
`<prefix>graph-leases` (Terraform's on AWS, like the others).
"""

from __future__ import annotations

from api.accounts import AccountStore
from fanline import versions
from fanline.settings import Settings, SettingsError
from processors.settings import FoldSettings
from projections.dynamodb_accounts import DynamoDBAccounts
from projections.graph import GraphStore
from projections.graph_gremlin import GremlinGraph
from projections.sqlite_accounts import SQLiteAccounts
from projections.store import Store
from projections.versions import check_version
from streams.dynamodb_leases import DynamoDBLeaseStore
from streams.kinesis_log import KinesisLog
from streams.leases import LeaseStore
from streams.log import Log
from streams.sqlite_leases import SQLiteLeaseStore
from streams.sqlite_log import SQLiteLog


def _data_dir(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)


def _creates(settings: Settings) -> bool:
    """Create missing streams and tables only on an emulator (see the module docstring)."""
    return settings.endpoint_url is not None or settings.kinesis_endpoint_url is not None


async def open_log(settings: Settings) -> Log:
    if settings.backend == "sqlite":
        _data_dir(settings)
        return SQLiteLog(settings.data_dir / "log.db", shard_count=settings.shards)
    endpoint_url = settings.kinesis_endpoint_url or settings.endpoint_url
    log = await KinesisLog.connect(settings.stream_name, endpoint_url=endpoint_url, region=settings.region)
    if _creates(settings):
        await log.ensure_stream(settings.shards)
    return log


async def open_store(settings: Settings) -> Store:
    """The projections of the version the pointer names ("" until `fanline replay` switched)."""
    return await versions.open_store_version(settings, await versions.active_version(settings))


async def open_leases(settings: Settings) -> LeaseStore:
    """The leases (and checkpoints) of the active projection version: each version has its own."""
    return await versions.open_leases_version(settings, await versions.active_version(settings))


async def open_accounts(settings: Settings) -> AccountStore:
    if settings.backend == "sqlite":
        _data_dir(settings)
        return SQLiteAccounts(settings.data_dir / "accounts.db")
    accounts = await DynamoDBAccounts.connect(
        settings.table_prefix, endpoint_url=settings.endpoint_url, region=settings.region
    )
    if _creates(settings):
        await accounts.ensure_tables()
    return accounts


def _graph_suffix(version: str) -> str:
    return f"-{check_version(version)}" if version else ""


def open_graph(settings: Settings, version: str = "") -> GraphStore | None:
    """The graph projection FANLINE_GRAPH names; None when it is off. It connects on first use.
    Embedded, each projection version has a graph of its own (graph.db, graph-r1.db, ...: see
    fanline.graph); Neptune's is one graph, whatever the version."""
    if settings.graph == "off":
        return None
    if settings.graph == "embedded":
        _data_dir(settings)
        return GremlinGraph.embedded(settings.data_dir / f"graph{_graph_suffix(version)}.db")
    if not settings.neptune_host:
        raise SettingsError("bad setting: FANLINE_GRAPH=neptune needs FANLINE_NEPTUNE_HOST")
    region = settings.region if settings.neptune_iam else None
    return GremlinGraph.neptune(settings.neptune_host, region=region)


async def open_graph_leases(settings: Settings, version: str = "") -> LeaseStore:
    """The graph processor's leases: its own table, so it checkpoints apart from the runner.
    On SQLite one file per projection version (graph-leases.db, graph-leases-r1.db, ...)."""
    if settings.backend == "sqlite":
        _data_dir(settings)
        return SQLiteLeaseStore(settings.data_dir / f"graph-leases{_graph_suffix(version)}.db")
    if version:
        raise ValueError("the graph's leases on the aws backend have no versions")
    leases = await DynamoDBLeaseStore.connect(
        settings.table_prefix + "graph-leases", endpoint_url=settings.endpoint_url, region=settings.region
    )
    if _creates(settings):
        await leases.ensure_table()
    return leases


async def active_fold_settings(settings: Settings) -> FoldSettings:
    """The fold settings the active projection version was built with (the pointer's record),
    else the environment's (`fold_settings`); a warning when they differ."""
    pointer = await versions.open_pointer(settings)
    try:
        pointed = await pointer.get()
    finally:
        await pointer.close()
    return versions.version_fold(pointed, pointed.active, fold_settings(settings))


def fold_settings(settings: Settings) -> FoldSettings:
    """The environment's fold settings: a new projection version's (see `active_fold_settings`)."""
    return FoldSettings(
        strategy=settings.strategy,
        celebrity_threshold=settings.celebrity_threshold,
        timeline_cap=settings.timeline_cap,
        backfill_depth=settings.backfill_depth,
    )
