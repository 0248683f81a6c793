"""How much DynamoDBStore.apply costs over a bare BatchWriteItem loop, on the same dynalite.

Both sides write the same timeline entries (PutTimelineEntries, the bulk of fan-out), 25 per
BatchWriteItem call, with the same number of calls in flight (the store's `concurrency`), over
the same client. The bare side sends requests built before its clock starts: the least any
writer must do. The store also builds its items, drops duplicate keys, and writes its applied
mark last. The two run in alternating rounds so drift (dynalite's store growing, the 2 shared
cores busy with something else) hits both alike.

Run it as `python -m fanline.benchmarks.dynamodb_write` (a throwaway dynalite is started and
stopped by pid) or pass `--endpoint-url`. The last line printed is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click

from fanline import emulators
from projections.dynamodb_store import BATCH_WRITE_MAX, DynamoDBStore, Item, plan_writes
from projections.records import PutTimelineEntries, TimelineEntry
from projections.tables import TIMELINES, sort_key

ROUNDS = 10  # slices per side, alternating: short slices even out the shared machine's noise
READERS = 500  # timelines the items are spread over


def make_entries(items: int, round_: int) -> tuple[TimelineEntry, ...]:
    return tuple(
        TimelineEntry(f"r{round_}-{i % READERS:04d}", 1_700_000_000_000 + i, f"p{i}", f"a{i % 97}")
        for i in range(items)
    )


def bare_requests(entries: tuple[TimelineEntry, ...]) -> list[list[Item]]:
    """The entries as PutRequests in chunks of 25, built the plain way."""
    puts = [
        {"PutRequest": {"Item": {
            "user_id": {"S": e.user_id}, "ts_post_id": {"S": sort_key(e.key)},
            "post_id": {"S": e.post_id}, "author_id": {"S": e.author_id}, "ts": {"N": str(e.ts)},
        }}}
        for e in entries
    ]
    return [puts[i:i + BATCH_WRITE_MAX] for i in range(0, len(puts), BATCH_WRITE_MAX)]


async def bare_write(client: Any, table: str, chunks: list[list[Item]], concurrency: int) -> None:
    """BatchWriteItem per chunk, `concurrency` in flight, unprocessed items sent again at once."""
    limit = asyncio.Semaphore(concurrency)

    async def write(chunk: list[Item]) -> None:
        pending: dict[str, Any] = {table: chunk}
        async with limit:
            while pending:
                answer = await client.batch_write_item(RequestItems=pending)
                pending = answer.get("UnprocessedItems") or {}

    await asyncio.gather(*(write(chunk) for chunk in chunks))


# 2000 items per apply (ROUNDS slices): an apply has two fixed round trips (the late-writer check
# of the shard's mark before, the mark itself after), which a runner's batch spreads over its
# thousands of fan-out items. At 500 items per apply the bench measured mostly those round trips
# (ratio 0.74-0.82 against 0.82-0.90 here, same machine).
DEFAULT_ITEMS = 20_000


async def measure_dynamodb_ratio(
    endpoint_url: str, items: int = DEFAULT_ITEMS, concurrency: int = 8
) -> dict[str, float]:
    """Items/s of DynamoDBStore.apply and of a bare BatchWriteItem loop, and their ratio."""
    store = await DynamoDBStore.connect(
        endpoint_url=endpoint_url, table_prefix=f"bench-{uuid.uuid4().hex[:8]}-",
        concurrency=concurrency,
    )
    try:
        await store.create_tables()
        table = store.table(TIMELINES)
        totals = {"store": 0.0, "bare": 0.0}
        per_round = max(1, items // ROUNDS)
        for round_ in range(ROUNDS):
            # Each round writes fresh timelines; the two sides the same number of items.
            store_entries = make_entries(per_round, 2 * round_)
            chunks = bare_requests(make_entries(per_round, 2 * round_ + 1))
            order = ["store", "bare"] if round_ % 2 == 0 else ["bare", "store"]
            for side in order:
                began = time.perf_counter()
                if side == "store":
                    await store.apply([PutTimelineEntries(store_entries)], "bench", str(round_ + 1))
                else:
                    await bare_write(store.client, table, chunks, concurrency)
                totals[side] += time.perf_counter() - began
        # Both sides really wrote what they were given.
        for round_ in range(2 * ROUNDS):
            entry = make_entries(per_round, round_)[-1]
            page = await store.timeline_page(entry.user_id, 1, None)
            if page != [entry]:
                raise RuntimeError(f"round {round_}: the newest entry is {page}, not {entry}")
    finally:
        await store.close()
    store_ips = per_round * ROUNDS / totals["store"]
    bare_ips = per_round * ROUNDS / totals["bare"]
    return {
        "dynamodb_items_per_s": round(store_ips, 1),
        "bare_batch_write_items_per_s": round(bare_ips, 1),
        "dynamodb_ratio": round(store_ips / bare_ips, 3),
    }


def _planning_cost(items: int) -> float:
    """Seconds DynamoDBStore spends building and de-duplicating `items` writes (no I/O)."""
    mutation = PutTimelineEntries(make_entries(items, 0))
    began = time.perf_counter()
    plan_writes([mutation])
    return time.perf_counter() - began


@click.command("write")
@click.option("--items", default=DEFAULT_ITEMS, show_default=True, help="timeline entries per side")
@click.option("--concurrency", default=8, show_default=True, help="BatchWriteItem calls in flight")
@click.option("--endpoint-url", default=None, help="a running dynalite (default: start one here)")
def bench_dynamodb_write(items: int, concurrency: int, endpoint_url: str | None) -> None:
    """DynamoDBStore.apply items/s against a bare BatchWriteItem loop on dynalite."""
    # A throwaway dynalite accepts any credentials; the SDK insists on some.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    if endpoint_url:
        figures = asyncio.run(measure_dynamodb_ratio(endpoint_url, items, concurrency))
    else:
        with tempfile.TemporaryDirectory(prefix="fanline-bench-dynamodb-") as tmp:
            emulator = emulators.start("dynalite", Path(tmp) / "dynalite")
            try:
                figures = asyncio.run(
                    measure_dynamodb_ratio(emulator.endpoint_url, items, concurrency)
                )
            finally:
                emulator.stop()
    figures["store_planning_us_per_item"] = round(_planning_cost(items) / items * 1e6, 2)
    click.echo(
        f"DynamoDBStore.apply: {figures['dynamodb_items_per_s']:,.0f} items/s; bare BatchWriteItem: "
        f"{figures['bare_batch_write_items_per_s']:,.0f} items/s; ratio {figures['dynamodb_ratio']} "
        f"({concurrency} calls in flight each; the store's own item building and de-duplication "
        f"{figures['store_planning_us_per_item']}"
        " µs/item)"
    )
    click.echo(json.dumps(figures))


if __name__ == "__main__":
    bench_dynamodb_write()
