"""A consumer worker process for tests/streams/test_consumer.py.

Consumes an SQLite log with SQLite leases and writes every item it handles (worker, shard,
sequence, event id) into its own SQLite file, committed before the handler returns, so what
it processed survives a SIGKILL. SIGTERM and SIGINT stop it cleanly (leases released).

    python -m tests.streams.consumer_worker LOG LEASES OUT --worker-id w1 --lease-timeout 1.5
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3
from pathlib import Path

from streams.consumer import Consumer
from streams.delivery import Batch, Delivered
from streams.sqlite_leases import SQLiteLeaseStore
from streams.sqlite_log import SQLiteLog


async def main(args: argparse.Namespace) -> None:
    out = sqlite3.connect(args.out)
    out.execute("CREATE TABLE IF NOT EXISTS processed (worker TEXT, shard TEXT, seq TEXT, event_id TEXT)")

    async def handler(batch: Batch) -> None:
        rows = [
            (args.worker_id, i.shard_id, i.sequence, i.event.id if isinstance(i, Delivered) else "")
            for i in batch.items
        ]
        with out:
            out.executemany("INSERT INTO processed VALUES (?, ?, ?, ?)", rows)
        await asyncio.sleep(args.delay)  # some work, so a kill lands mid-stream

    log = SQLiteLog(Path(args.log), shard_count=4)
    leases = SQLiteLeaseStore(args.leases)
    consumer = Consumer(
        log, leases, handler, worker_id=args.worker_id,
        lease_timeout_s=args.lease_timeout, batch_size=args.batch_size, idle_wait_s=0.2,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, consumer.stop)
    try:
        await consumer.run()
    finally:
        await leases.close()
        await log.close()
        out.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("leases")
    parser.add_argument("out")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--lease-timeout", type=float, default=1.5)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.02)
    asyncio.run(main(parser.parse_args()))
