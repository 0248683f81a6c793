"""The processors of `fanline process`: the projection runner on the active projection version,
and the archiver beside it, each a shard consumer on a lease table of its own.

When `fanline replay` moves the version pointer, the runner's consumer stops (it finishes its
batch, checkpoints, releases its leases on the old version) and a new one starts on the new
version's store and leases, which the replay seeded at the positions it had rebuilt to: the
events that arrived meanwhile are read from the stream and folded into the new version, none
skipped (the checkpoints are the new version's own) and none folded twice (the runner skips
what the store has applied). Looked at once per `versions.POINTER_CHECK_S`.

Each version is folded, and read, with the fold settings the pointer recorded for it
(`versions.version_fold`): `fold` (the environment's) counts only for a version without them.
"""

from __future__ import annotations

import asyncio
import logging

from fanline import versions
from fanline.consuming import OnStop, consume_on_own_leases
from fanline.graph import run_graph
from fanline.settings import Settings
from fanline.wiring import fold_settings
from processors.archive import Archiver
from processors.metrics import Metrics
from processors.runner import Runner
from processors.settings import FoldSettings
from projections.store import Store
from projections.switching import SwitchingStore
from projections.timeline import Strategy
from projections.versions import Versions
from streams.consumer import Consumer
from streams.log import Log

logger = logging.getLogger(__name__)


async def open_following_store(settings: Settings, fold: FoldSettings | None = None) -> SwitchingStore:
    """The read API's store: the active version's, following the pointer (closes the pointer too),
    with the strategy that version was built with (`fold`'s, by default the environment's, when
    none is recorded)."""
    fold = fold or fold_settings(settings)

    async def open_active(pointed: Versions) -> tuple[Store, Strategy]:
        strategy = versions.version_fold(pointed, pointed.active, fold).strategy
        return await versions.open_store_version(settings, pointed.active), strategy

    pointer = await versions.open_pointer(settings)
    return await SwitchingStore.open(pointer, open_active, check_every_s=versions.POINTER_CHECK_S)


async def run_projections(settings: Settings, log: Log, fold: FoldSettings, metrics: Metrics,
                          worker_id: str, on_stop: OnStop) -> None:
    stopping = asyncio.Event()
    on_stop(stopping.set)
    while not stopping.is_set():
        pointer = await versions.open_pointer(settings)
        try:
            pointed = await pointer.get()
        finally:
            await pointer.close()
        version = pointed.active
        version_fold = versions.version_fold(pointed, version, fold)
        store = await versions.open_store_version(settings, version)
        try:
            leases = await versions.open_leases_version(settings, version)
            try:
                runner = Runner(store, version_fold, metrics)
                # A shard taken (again) starts from the store's applied mark, not a cached one:
                # another worker may have applied past it meanwhile.
                consumer = Consumer(log, leases, runner.handle, worker_id=worker_id,
                                    on_lease_acquired=runner.forget, on_lease_lost=runner.forget)
                on_stop(consumer.stop)
                await versions.run_until_switch(settings, version, consumer, "processors")
            finally:
                await leases.close()
        finally:
            await store.close()


async def run_archiver(settings: Settings, log: Log, worker_id: str, on_stop: OnStop) -> None:
    archive = await versions.open_archive(settings)
    if archive is None:
        return  # aws without FANLINE_ARCHIVE_BUCKET (or Firehose does it)
    try:
        leases = await versions.open_archive_leases(settings)
        await consume_on_own_leases(log, leases, Archiver(archive).handle, worker_id, on_stop)
    finally:
        await archive.close()


async def run_processors(settings: Settings, log: Log, fold: FoldSettings, metrics: Metrics,
                         worker_id: str, on_stop: OnStop) -> None:
    """All until stopped. A failure of one stops the others, then is raised."""
    tasks = [asyncio.create_task(run_projections(settings, log, fold, metrics, worker_id, on_stop)),
             asyncio.create_task(run_archiver(settings, log, worker_id, on_stop)),
             # The graph projection (FANLINE_GRAPH; returns at once when off): leases of its own.
             asyncio.create_task(run_graph(settings, log, worker_id, on_stop))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
