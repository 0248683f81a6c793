"""How much KinesisLog.append costs over a bare PutRecords loop, on the same kinesalite.

Both sides send the same batches of 500 PostCreated events (~200 bytes each) one call in
flight at a time, over one client, into one stream. They run in alternating slices so drift
(kinesalite's store growing, the 2 shared cores busy with something else) hits both alike.

The log's extra cost is mostly its per-key rule: a batch holding an author twice needs two
PutRecords calls (see streams/kinesis_log.py). With uniformly drawn authors among 100 000
users a batch of 500 repeats about one key, so most appends cost two calls, the second
with one or two records. `author_skew` > 0 draws authors from a Zipf law to show the cost
when a few authors post much more than the rest.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import click

from fanline import emulators
from streams.events import PostCreated, PostCreatedData, encode
from streams.kinesis_log import KinesisLog

Batch = list[tuple[str, bytes]]

BATCH_SIZE = 500
# Slices per side: enough alternation to even out drift, long enough to be many calls each.
SLICES = 6


def make_batches(
    count: int, *, authors: int = 100_000, author_skew: float = 0.0, seed: int = 1
) -> list[Batch]:
    """`count` batches of 500 encoded PostCreated events, partitioned by author as the API does."""
    rng = random.Random(seed)
    weights: list[float] | None = None
    if author_skew > 0:
        weights = list(itertools.accumulate(1 / rank**author_skew for rank in range(1, authors + 1)))
    batches = []
    for b in range(count):
        picks = rng.choices(range(authors), cum_weights=weights, k=BATCH_SIZE)
        batch = []
        for i, author in enumerate(picks):
            author_id = f"u{author:06d}"
            event = PostCreated(
                id=f"e-{b}-{i}-{uuid.uuid4().hex[:8]}",
                ts=1_700_000_000_000 + b * BATCH_SIZE + i,
                data=PostCreatedData(
                    post_id=f"p-{b}-{i}", author_id=author_id, body=rng.choice(_BODIES)
                ),
            )
            batch.append((author_id, encode(event)))
        batches.append(batch)
    return batches


_BODIES = [
    "Trying the new ramen place on 5th street tonight, the broth is unreal and the queue was worth it",
    "Release day! Version 2.3 ships with faster sync, offline mode and a few bugs we will regret",
    "Morning run along the river: 8 km, cold wind, one very determined heron watching me the whole way",
]


def calls_per_append(batches: Sequence[Batch]) -> float:
    """PutRecords calls KinesisLog needs per batch of <= 500: its most repeated key's count."""
    return sum(max(Counter(key for key, _ in batch).values()) for batch in batches) / len(batches)


async def _run_for(send: Callable[[Batch], Awaitable[object]], batches: list[Batch], seconds: float,
                   start: int) -> tuple[int, float, int]:
    """Send batches back to back for about `seconds`; answer (records, elapsed, next batch index)."""
    sent = 0
    index = start
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        batch = batches[index % len(batches)]
        await send(batch)
        sent += len(batch)
        index += 1
    return sent, time.perf_counter() - began, index


async def measure_kinesis_append_ratio(
    endpoint_url: str,
    seconds: float = 5.0,
    *,
    shard_count: int = 4,
    authors: int = 100_000,
    author_skew: float = 0.0,
) -> dict[str, float]:
    """Events/s of KinesisLog.append and of a bare PutRecords loop, and their ratio (log / bare).

    `seconds` is the total measuring time, split evenly between the two sides.
    """
    log = await KinesisLog.connect(f"bench-{uuid.uuid4().hex[:12]}", endpoint_url=endpoint_url)
    try:
        await log.ensure_stream(shard_count)
        batches = make_batches(40, authors=authors, author_skew=author_skew)
        client, stream = log.client, log.stream_name

        async def bare(batch: Batch) -> object:
            # The least a producer must do: one PutRecords per batch, no checks, no retries.
            return await client.put_records(
                StreamName=stream, Records=[{"Data": data, "PartitionKey": key} for key, data in batch]
            )

        sides: dict[str, Callable[[Batch], Awaitable[object]]] = {"bare": bare, "log": log.append}
        for send in sides.values():  # warm up connections and kinesalite's code paths
            await _run_for(send, batches, 0.0, 0)
        totals = {name: [0, 0.0] for name in sides}
        index = 0
        for round_ in range(SLICES):
            # Alternate who goes first so neither side always meets a freshly grown store.
            order = ["bare", "log"] if round_ % 2 == 0 else ["log", "bare"]
            for name in order:
                sent, elapsed, index = await _run_for(sides[name], batches, seconds / 2 / SLICES, index)
                totals[name][0] += sent
                totals[name][1] += elapsed
    finally:
        await log.close()
    log_eps = totals["log"][0] / totals["log"][1]
    bare_eps = totals["bare"][0] / totals["bare"][1]
    return {
        "kinesis_append_eps": round(log_eps, 1),
        "bare_put_records_eps": round(bare_eps, 1),
        "kinesis_append_ratio": round(log_eps / bare_eps, 3),
        "put_records_calls_per_append": round(calls_per_append(batches), 2),
        "author_skew": author_skew,
        "event_bytes": round(sum(len(d) for b in batches for _, d in b) / (len(batches) * BATCH_SIZE), 1),
    }


@click.command("kinesis")
@click.option("--seconds", default=5.0, show_default=True, help="measuring time per distribution")
@click.option("--endpoint-url", default=None, help="a running kinesalite; default: start one")
def main(seconds: float, endpoint_url: str | None) -> None:
    """KinesisLog.append against a bare PutRecords loop, uniform then Zipf-skewed authors."""
    emulator = None
    if endpoint_url is None:
        # Our own throwaway kinesalite accepts any credentials; the SDK insists on some.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        emulator = emulators.start("kinesalite", Path(tempfile.mkdtemp(prefix="fanline-bench-")))
        endpoint_url = emulator.endpoint_url
    try:
        uniform = asyncio.run(measure_kinesis_append_ratio(endpoint_url, seconds))
        skewed = asyncio.run(measure_kinesis_append_ratio(endpoint_url, seconds, author_skew=1.0))
    finally:
        if emulator is not None:
            emulator.stop()
    for label, figures in (("uniform authors", uniform), ("zipf(1.0) authors", skewed)):
        click.echo(f"{label}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    click.echo(json.dumps({**uniform, **{f"skewed_{k}": v for k, v in skewed.items()}}))


if __name__ == "__main__":
    main()
