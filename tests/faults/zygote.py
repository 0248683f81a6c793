"""Processor workers for the fault tests, forked from one process that has imported everything.

A worker is the projection runner of `fanline process` (fanline.wiring's log, store and leases of
the data directory, processors.runner.Runner with the fold settings of FANLINE_*, a Consumer) with
a short lease timeout and small batches, so a test can kill many of them within seconds: Python
takes seconds to import fanline on a busy machine; a fork takes milliseconds.

    python -m tests.faults.zygote DATA_DIR LEASE_TIMEOUT_S
    stdin:  spawn WORKER_ID [RECORD_FILE [PAUSE_S]]     stdout: pid PID

A worker stops cleanly on SIGTERM (batch finished, checkpointed, leases released) and exits 0; it
is killed with SIGKILL by its pid. With RECORD_FILE it records every batch it handled (worker,
shard, first and last sequence, start and end on the monotonic clock), committed before the
handler returns, so what it did survives a SIGKILL. PAUSE_S: a wait between each batch's fold and
its apply, the window in which a slow worker's lease can move to a quicker one. The zygote's
children are reaped by the kernel (SIGCHLD ignored); the zygote ends when its stdin closes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fanline.settings import Settings
from fanline.wiring import fold_settings, open_leases, open_log, open_store
from processors.metrics import Metrics
from processors.runner import Runner
from projections.records import Mutation
from streams.consumer import Consumer
from streams.delivery import Batch

BATCH_SIZE = 50


async def work(
    data_dir: Path, lease_timeout_s: float, worker_id: str, record: Path | None, pause_s: float
) -> None:
    settings = Settings.load({"data_dir": data_dir})
    log = await open_log(settings)
    store = await open_store(settings)
    leases = await open_leases(settings)
    if pause_s:
        apply = store.apply

        async def slow_apply(mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
            await asyncio.sleep(pause_s)
            await apply(mutations, shard_id, sequence)

        store.apply = slow_apply  # type: ignore[method-assign]
    runner = Runner(store, fold_settings(settings), Metrics())
    out = sqlite3.connect(record) if record else None
    if out is not None:
        out.execute("CREATE TABLE IF NOT EXISTS batches (worker, shard, first, last, t0 REAL, t1 REAL)")

    async def handle(batch: Batch) -> None:
        t0 = time.monotonic()
        await runner.handle(batch)
        if out is not None and batch.items:
            with out:
                out.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                            (worker_id, batch.shard_id, batch.items[0].sequence, batch.last_sequence, t0,
                             time.monotonic()))

    consumer = Consumer(log, leases, handle, worker_id=worker_id, lease_timeout_s=lease_timeout_s,
                        batch_size=BATCH_SIZE, idle_wait_s=0.05, retry_max_s=0.5)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, consumer.stop)
    try:
        await consumer.run()
    finally:
        await leases.close()
        await store.close()
        await log.close()


def spawn(data_dir: Path, lease_timeout_s: float, worker_id: str, record: Path | None, pause_s: float) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        asyncio.run(work(data_dir, lease_timeout_s, worker_id, record, pause_s))
        code = 0
    finally:
        os._exit(code)


def main() -> None:
    data_dir, lease_timeout_s = Path(sys.argv[1]), float(sys.argv[2])
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the workers
    for line in sys.stdin:
        command, *args = line.split()
        if command == "spawn":
            record = Path(args[1]) if len(args) > 1 and args[1] != "-" else None
            pause_s = float(args[2]) if len(args) > 2 else 0.0
            pid = spawn(data_dir, lease_timeout_s, args[0], record, pause_s)
            print(f"pid {pid}", flush=True)


if __name__ == "__main__":
    main()
