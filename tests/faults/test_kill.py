"""A processor killed with SIGKILL at random points, 24 times, while events flow: nothing lost,
nothing doubled; every projection equals the reference model at the end.

The workers are `fanline process`'s projection runner (tests/faults/zygote.py) on the SQLite data
directory, with a lease timeout of 0.6 s. Half the restarts come back under the killed worker's
name (a restarted task with a stable identity takes its leases back at once), half under a new one
(which must wait for the dead worker's leases to expire): kills land while starting, mid-batch,
between apply and checkpoint, and while taking over.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from fanline.settings import Settings
from fanline.wiring import open_log, open_store
from streams.log import Appended, Log
from tests.faults.support import World, Zygote, fold_env, last_per_shard, wait_applied

KILLS = 24
LEASE_TIMEOUT_S = 0.6


async def feed(
    log: Log, records: list[tuple[str, bytes]], into: list[Appended], step: int, pause_s: float
) -> None:
    for start in range(0, len(records), step):
        into.extend(await log.append(records[start:start + step]))
        await asyncio.sleep(pause_s)


async def test_a_processor_killed_24_times_while_events_flow_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(20261125)
    world = World(seed=3, namespaces=14, ops_each=40, prefix="kill")
    records = world.records()
    env = {**fold_env(), "FANLINE_BACKEND": "sqlite", "FANLINE_SHARDS": "4"}
    settings = Settings.load({"data_dir": tmp_path}, environ=env)
    log = await open_log(settings)
    store = await open_store(settings)
    zygote = Zygote(tmp_path, env, LEASE_TIMEOUT_S)
    appended: list[Appended] = []
    started = time.monotonic()
    try:
        # Spread over the kills: 10 records every 0.2 s.
        feeding = asyncio.create_task(feed(log, records, appended, 10, 0.2))
        flowing_at_half = False
        worker, restarts = "w0", 0
        for kill in range(KILLS):
            if kill % 2:
                restarts += 1
                worker = f"w{restarts}"
                delay = LEASE_TIMEOUT_S + rng.uniform(0.0, 0.6)  # after the takeover, at a random point
            else:
                delay = rng.uniform(0.02, 0.5)  # same name: from the first moments on
            if kill == KILLS // 2:
                flowing_at_half = not feeding.done()
            pid = zygote.spawn(worker)
            await asyncio.sleep(delay)
            await zygote.kill(pid)
        await feeding
        marks_before = await store.applied()
        last = zygote.spawn("survivor")
        await wait_applied(store, last_per_shard(appended), timeout_s=40)
        await zygote.stop(last)
        assert flowing_at_half, "events stopped flowing before half the kills"
        assert len(records) > 500
        assert sum(int(m) for m in marks_before.values()) > 0  # the killed workers did make progress
        await world.check(store)
        assert await store.dead_letters(10) == []
        assert time.monotonic() - started < 90
    finally:
        zygote.close()
        await store.close()
        await log.close()
