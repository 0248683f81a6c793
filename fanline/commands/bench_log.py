"""`fanline bench log`: how fast the log takes and gives events.

- append_eps: events/s through SQLiteLog.append, batches of 500 encoded PostCreated events.
- append_ratio: that over a bare sqlite3 loop (BEGIN; executemany of the same rows into one bare
  table of the same row shape, same pragmas; COMMIT) in the same run, one batch in flight on
  each side. The two run in 24 pairs of short alternating slices in the same directory; the
  ratio is the median of the pairs' ratios, so a burst of other work on the 2 shared cores
  cannot swing it. The 40 batches (authors drawn from 100 000) are sent round and round, so
  after the first pass the log's key-to-shard cache always hits, as it would for a live site
  whose active authors fit in it.
- consume_eps: engineer C's `fanline.benchmarks.consume.measure_consume_eps`.
- kinesis_append_ratio: engineer B's `fanline.benchmarks.kinesis.measure_kinesis_append_ratio`
  on a kinesalite started here and stopped afterwards.

Everything lives in a temporary directory removed at the end. The last line printed is one JSON
object with every figure.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import click

from fanline import emulators
from fanline.benchmarks.consume import measure_consume_eps
from fanline.benchmarks.kinesis import BATCH_SIZE, Batch, make_batches, measure_kinesis_append_ratio
from streams.sqlite_log import SQLiteLog, connect

SLICES = 24  # pairs of slices, one slice of each side
# The consume benchmark reads its log 3 times per side: 50 000 events keep it near 10 s.
CONSUME_EVENTS = 50_000


async def measure_sqlite_append(directory: Path, seconds: float) -> dict[str, float]:
    """Events/s of SQLiteLog.append and of a bare executemany loop, and their ratio."""
    batches = make_batches(40)
    log = SQLiteLog(directory / "log.sqlite")
    bare = connect(directory / "bare.sqlite")
    bare.execute(
        "CREATE TABLE bare (seq INTEGER PRIMARY KEY, shard INTEGER NOT NULL, "
        "partition_key TEXT NOT NULL, data BLOB NOT NULL)"
    )
    next_seq = 1

    async def append_bare(batch: Batch) -> None:
        # The least a log must do: number the rows and insert them in one transaction (the
        # log's row shape, with shard 0: finding the shard is the log's own work).
        nonlocal next_seq
        rows = [(next_seq + n, 0, key, data) for n, (key, data) in enumerate(batch)]
        next_seq += len(batch)
        bare.execute("BEGIN IMMEDIATE")
        bare.executemany("INSERT INTO bare VALUES (?, ?, ?, ?)", rows)
        bare.execute("COMMIT")

    async def append_log(batch: Batch) -> None:
        await log.append(batch)

    sides = {"log": append_log, "bare": append_bare}
    # Per slice: (events, seconds) of each side. Slices are short and paired (bare then log,
    # log then bare, ...) so a burst of other work on the shared cores lands on both of a pair.
    pairs: list[dict[str, tuple[int, float]]] = []
    index = 0
    try:
        for slice_ in range(SLICES):
            pair = {}
            for name in ("bare", "log") if slice_ % 2 == 0 else ("log", "bare"):
                began, sent = time.perf_counter(), 0
                while time.perf_counter() - began < seconds / 2 / SLICES:
                    await sides[name](batches[index % len(batches)])
                    index += 1
                    sent += BATCH_SIZE
                pair[name] = (sent, time.perf_counter() - began)
            pairs.append(pair)
    finally:
        await log.close()
        bare.close()
    log_eps, bare_eps = (
        sum(p[name][0] for p in pairs) / sum(p[name][1] for p in pairs) for name in ("log", "bare")
    )
    # The median of the pairs' ratios: one burst of load from elsewhere cannot swing it.
    ratios = [(p["log"][0] / p["log"][1]) / (p["bare"][0] / p["bare"][1]) for p in pairs]
    return {
        "append_eps": round(log_eps, 1),
        "bare_executemany_eps": round(bare_eps, 1),
        "append_ratio": round(statistics.median(ratios), 3),
        "append_ratio_of_totals": round(log_eps / bare_eps, 3),
    }


def measure_commit_ms(directory: Path, commits: int = 50) -> float:
    """The median time of a one-row commit here: the fsync that bounds serial durable appends."""
    conn = connect(directory / "commit.sqlite")
    conn.execute("CREATE TABLE t (x INTEGER)")
    took = []
    for n in range(commits):
        began = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (n,))
        conn.execute("COMMIT")
        took.append(time.perf_counter() - began)
    conn.close()
    return round(statistics.median(took) * 1000, 3)


async def measure_kinesis(directory: Path, seconds: float) -> dict[str, float]:
    # Our own throwaway kinesalite accepts any credentials; the SDK insists on some.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    emulator = emulators.start("kinesalite", directory / "kinesalite")
    try:
        return await measure_kinesis_append_ratio(emulator.endpoint_url, seconds)
    finally:
        emulator.stop()


@click.command("log")
@click.option("--seconds", default=6.0, show_default=True, help="measuring time of each figure")
@click.option("--consume-events", default=CONSUME_EVENTS, show_default=True, help="events the consumer reads")
def bench_log(seconds: float, consume_events: int) -> None:
    """Append and consume rates of the SQLite log, and the Kinesis log's cost over bare PutRecords."""
    with tempfile.TemporaryDirectory(prefix="fanline-bench-log-") as tmp:
        directory = Path(tmp)
        figures = asyncio.run(measure_sqlite_append(directory, seconds))
        figures["commit_ms"] = measure_commit_ms(directory)
        click.echo(
            f"SQLiteLog.append: {figures['append_eps']:,.0f} events/s; bare executemany: "
            f"{figures['bare_executemany_eps']:,.0f} events/s; ratio {figures['append_ratio']}; "
            f"a one-row commit (fsync) takes {figures['commit_ms']} ms here"
        )
        consume = asyncio.run(measure_consume_eps(consume_events))
        click.echo("Consumer on SQLiteLog: " + ", ".join(f"{k}={v}" for k, v in consume.items()))
        figures["consume_eps"] = consume["consume_eps"]
        kinesis = asyncio.run(measure_kinesis(directory, seconds))
        click.echo("KinesisLog.append on kinesalite: " + ", ".join(f"{k}={v}" for k, v in kinesis.items()))
        figures["kinesis_append_ratio"] = kinesis["kinesis_append_ratio"]
    # The machine's 2 cores are shared: the load says how much to trust the figures.
    figures["load_avg_1m"] = round(os.getloadavg()[0], 2)
    click.echo(json.dumps(figures))
