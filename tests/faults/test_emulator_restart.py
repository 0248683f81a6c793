"""kinesalite and dynalite (with --path) restarted mid-run while events flow: the processors ride out
the outage (retries), resume from their checkpoints (the log is not read again from its start), and
every projection equals the reference model. The producer retries a refused append, as a client
answered 503 would.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from fanline import emulators
from fanline.emulators import free_port
from processors.runner import Runner
from projections.dynamodb_store import DynamoDBStore
from streams.consumer import Consumer
from streams.delivery import Batch
from streams.dynamodb_leases import DynamoDBLeaseStore
from streams.kinesis_log import KinesisLog
from streams.log import Appended, LogUnavailable
from tests.faults.support import World, fold_settings, last_per_shard, wait_applied


async def feed_retrying(log: KinesisLog, records: list[tuple[str, bytes]], into: list[Appended]) -> None:
    for start in range(0, len(records), 5):
        while True:
            try:
                into.extend(await log.append(records[start:start + 5]))
                break
            except LogUnavailable:
                await asyncio.sleep(0.2)  # the emulator is down: nothing was appended, retry
        await asyncio.sleep(0.1)


async def test_emulators_restarted_mid_run_resume_from_the_checkpoints(tmp_path: Path) -> None:
    ports = {"kinesalite": free_port(), "dynalite": free_port()}
    running = {name: emulators.start(name, tmp_path / name, ports[name])  # type: ignore[arg-type]
               for name in ports}
    kinesis_url, dynamo_url = running["kinesalite"].endpoint_url, running["dynalite"].endpoint_url
    prefix = f"rst-{uuid.uuid4().hex[:6]}-"
    log = await KinesisLog.connect("restart", endpoint_url=kinesis_url, max_attempts=3, backoff_max_s=0.2)
    store = await DynamoDBStore.connect(endpoint_url=dynamo_url, table_prefix=prefix)
    leases = await DynamoDBLeaseStore.connect(prefix + "leases", endpoint_url=dynamo_url)
    world = World(seed=13, namespaces=8, ops_each=40, prefix="rst")
    records = world.records()
    handled = {"items": 0}
    try:
        await log.ensure_stream(2)
        await store.create_tables()
        await leases.ensure_table()
        runner = Runner(store, fold_settings())

        async def handle(batch: Batch) -> None:
            await runner.handle(batch)
            handled["items"] += len(batch.items)

        consumer = Consumer(log, leases, handle, worker_id="rst", idle_wait_s=0.1, lease_timeout_s=6,
                            retry_initial_s=0.1, retry_max_s=0.5)
        consuming = asyncio.create_task(consumer.run())
        appended: list[Appended] = []
        feeding = asyncio.create_task(feed_retrying(log, records, appended))
        try:
            for name in ("kinesalite", "dynalite"):
                await asyncio.sleep(1.0)
                running[name].stop()
                await asyncio.sleep(1.0)  # down for a while, events still offered
                running[name] = emulators.start(name, tmp_path / name, ports[name])  # type: ignore[arg-type]
            assert not feeding.done(), "the restarts must happen while events flow"
            await feeding
            await wait_applied(store, last_per_shard(appended), timeout_s=60)
        finally:
            consumer.stop()
            await asyncio.wait_for(consuming, 30)
        await world.check(store)
        # Resumed from the checkpoints: at most the batches in hand at each outage came again.
        assert len(appended) == len(records)
        assert handled["items"] < len(records) + 200, handled
    finally:
        await leases.close()
        await store.close()
        await log.close()
        for emulator in running.values():
            emulator.stop()
