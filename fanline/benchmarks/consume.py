"""How fast the shard consumer drains an SQLite log, and what it costs over a bare read loop.

`measure_consume_eps` appends `events` PostCreated events (~200 bytes each, uniformly drawn
authors) to a fresh 4-shard SQLiteLog in a temporary directory, then:

- baseline: read every shard to its end and decode every record, one shard after another,
  with no leases and no handler: the least any consumer must do.
- consumer: a `Consumer` with SQLite leases and a no-op handler, timed from `run()` until
  every record was handed over and every shard is checkpointed at its last sequence.

    python -m fanline.benchmarks.consume --events 200000
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import click

from fanline.benchmarks.kinesis import BATCH_SIZE, make_batches
from streams.consumer import Consumer, to_batch
from streams.delivery import Batch
from streams.log import Appended, Position
from streams.sqlite_leases import SQLiteLeaseStore
from streams.sqlite_log import SQLiteLog

# Records per read. Measured here: 500-1000 beat 5000 by ~30 % CPU, because a smaller batch
# dies before the cyclic GC promotes its objects to the old generation and sweeps them again.
READ_BATCH = 1000
ROUNDS = 3  # of each side, alternating


async def _fill(log: SQLiteLog, events: int) -> dict[str, str]:
    """Append `events` events; answer each shard's last sequence."""
    last: dict[str, Appended] = {}
    for batch in make_batches(max(1, events // BATCH_SIZE)):
        for appended in await log.append(batch):
            last[appended.shard_id] = appended
    return {shard_id: a.sequence for shard_id, a in last.items()}


async def _bare_read_and_decode(log: SQLiteLog, shard_ids: list[str]) -> int:
    count = 0
    for shard_id in shard_ids:
        reader = log.reader(shard_id, Position.trim_horizon())
        while (result := await reader.read(READ_BATCH)).records:
            count += len(to_batch(shard_id, result).items)
    return count


async def _consume(log: SQLiteLog, leases: SQLiteLeaseStore, total: int, last: dict[str, str]) -> None:
    handed = 0
    all_handed = asyncio.Event()

    async def handler(batch: Batch) -> None:
        nonlocal handed
        handed += len(batch.items)
        if handed >= total:
            all_handed.set()

    consumer = Consumer(log, leases, handler, worker_id="bench", batch_size=READ_BATCH)
    running = asyncio.create_task(consumer.run())
    try:
        await all_handed.wait()
        # The last checkpoint follows the last handler call at once; poll briefly for it.
        while {lease.shard_id: lease.checkpoint for lease in await leases.list()} != last:
            await asyncio.sleep(0.002)
    finally:
        consumer.stop()
        await running


async def _timed_consume(log: SQLiteLog, leases_path: Path, total: int, last: dict[str, str]) -> float:
    leases = SQLiteLeaseStore(leases_path)  # fresh leases: every shard from TRIM_HORIZON again
    try:
        began = time.perf_counter()
        await _consume(log, leases, total, last)
        return time.perf_counter() - began
    finally:
        await leases.close()


async def _timed_bare(log: SQLiteLog, total: int, last: dict[str, str]) -> float:
    began = time.perf_counter()
    read = await _bare_read_and_decode(log, sorted(last))
    took = time.perf_counter() - began
    if read != total:
        raise RuntimeError(f"the baseline read {read} of {total} records")
    return took


async def measure_consume_eps(events: int = 200_000) -> dict[str, float]:
    """Events/s through a Consumer (SQLite log and leases, no-op handler) and over a bare read loop.

    Both sides read the same log ROUNDS times, alternating, so load from other processes on
    the shared cores hits both alike; the figures are totals over the rounds.
    """
    seconds = {"consumer": 0.0, "bare": 0.0}
    with tempfile.TemporaryDirectory(prefix="fanline-bench-consume-") as tmp:
        log = SQLiteLog(Path(tmp) / "log.sqlite", shard_count=4)
        try:
            last = await _fill(log, events)
            total = (events // BATCH_SIZE or 1) * BATCH_SIZE
            for round_ in range(ROUNDS):
                consumer = _timed_consume(log, Path(tmp) / f"leases-{round_}.sqlite", total, last)
                bare = _timed_bare(log, total, last)
                if round_ % 2:
                    seconds["consumer"] += await consumer
                    seconds["bare"] += await bare
                else:
                    seconds["bare"] += await bare
                    seconds["consumer"] += await consumer
        finally:
            await log.close()
    consume_eps, bare_eps = (ROUNDS * total / seconds[side] for side in ("consumer", "bare"))
    return {
        "events": float(total),
        "consume_eps": round(consume_eps, 1),
        "bare_read_decode_eps": round(bare_eps, 1),
        "consume_ratio": round(consume_eps / bare_eps, 3),
    }


@click.command("consume")
@click.option("--events", default=200_000, show_default=True, help="events appended, then consumed")
def main(events: int) -> None:
    """Consume rate of the shard consumer on an SQLite log, over a bare read-and-decode loop."""
    figures = asyncio.run(measure_consume_eps(events))
    click.echo(
        f"Consumer: {figures['consume_eps']:,.0f} events/s; bare read+decode: "
        f"{figures['bare_read_decode_eps']:,.0f} events/s; ratio {figures['consume_ratio']}"
    )
    click.echo(json.dumps(figures))


if __name__ == "__main__":
    main()
