"""`fanline bench fanout`: how fast push fan-out writes timeline entries, and at what cost.

- deliveries_per_s: timeline entries written per second by the push fold + Runner + SQLiteStore
  in one process: AUTHORS authors with FOLLOWERS followers each (drawn from a shared pool, so
  timelines overlap) post in batches of BATCH_POSTS PostCreated events; each batch is one
  Runner.handle (state load, fold, one store.apply with its trims and applied mark).
- deliveries_ratio: that over a bare sqlite3 loop writing the same rows (BEGIN; executemany
  INSERT OR REPLACE into the same timelines table, same pragmas; COMMIT) in the same run.
  The rows of the bare side are built, and grouped by timeline in the Runner's order, before
  its clock starts: the least any writer must do. (Unsorted, the same rows go several times
  slower: the Runner's grouping is most of why it keeps up.)
  The two sides run in alternating slices on separate files in the same directory.
- where the time goes, per delivery: `store_apply_us` inside SQLiteStore.apply (rows built,
  executemany, commit) and `runner_us` in the rest of Runner.handle (state load, fold, coalesce,
  metrics), against `bare_us` per row of the bare side: the ratio's gap is their sum minus bare.
- dynamodb_ratio: engineer D's `measure_dynamodb_ratio` on a dynalite started here (stopped
  by pid afterwards).

Everything lives in a temporary directory removed at the end. The last line is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path

import click
from prometheus_client import CollectorRegistry

from fanline import emulators
from fanline.benchmarks.dynamodb_write import measure_dynamodb_ratio
from processors.metrics import Metrics
from processors.runner import Runner
from processors.settings import FoldSettings
from projections.records import Mutation
from projections.sqlite_store import SQLiteStore, table_ddl
from projections.tables import TABLES, TIMELINES, sort_key
from streams.delivery import Batch, Delivered, Undecodable
from streams.events import (
    Event,
    FollowData,
    PostCreated,
    PostCreatedData,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
)

AUTHORS = 20
FOLLOWERS = 1000
POOL = 5000  # followers are drawn from this many users: ~4 followed authors per reader
BATCH_POSTS = 100  # one Runner.handle: 100 posts x 1000 followers = 100 000 deliveries
SLICES = 6  # per side, alternating


def _world(seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    events: list[Event] = []
    for a in range(AUTHORS):
        author = f"a{a:02d}"
        events.append(UserRegistered(id=f"r{a}", ts=1, data=UserRegisteredData(author, f"author_{a}")))
        for n, f in enumerate(rng.sample(range(POOL), FOLLOWERS)):
            events.append(UserFollowed(id=f"f{a}.{n}", ts=2, data=FollowData(f"u{f:05d}", author)))
    return events


BODY = "a post of fifty-odd characters, as most of them are"


def _posts(batch: int) -> list[PostCreated]:
    base = 1_700_000_000_000 + batch * BATCH_POSTS
    return [
        PostCreated(id=f"e{batch}.{i}", ts=base + i,
                    data=PostCreatedData(f"p{batch}.{i}", f"a{i % AUTHORS:02d}", BODY))
        for i in range(BATCH_POSTS)
    ]


def _rows(posts: list[PostCreated], followers: dict[str, list[str]]) -> list[tuple[str, str, str, str, int]]:
    """The timelines rows a push of these posts writes, in the fold's order."""
    return [
        (owner, sort_key((p.ts, p.data.post_id)), p.data.post_id, p.data.author_id, p.ts)
        for p in posts
        for owner in [p.data.author_id, *followers[p.data.author_id]]
    ]


class _Feed:
    """One shard's worth of batches with growing sequence numbers."""

    def __init__(self) -> None:
        self.sequence = 0

    def batch(self, events: Sequence[Event]) -> Batch:
        items: list[Delivered | Undecodable] = []
        for event in events:
            self.sequence += 1
            items.append(Delivered("bench", str(self.sequence), event, 0))
        return Batch("bench", items, millis_behind=0)


def _bare_connection(path: Path) -> sqlite3.Connection:
    """The store's schema and pragmas (projections.sqlite_store), without the store."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 200")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    for spec in TABLES:
        for ddl in table_ddl(spec):
            conn.execute(ddl)
    return conn


async def measure_fanout(directory: Path, batches_per_side: int) -> dict[str, float]:
    store = SQLiteStore(directory / "store.sqlite")
    bare = _bare_connection(directory / "bare.sqlite")
    columns = ", ".join("?" for _ in TIMELINES.attributes)
    insert = f"INSERT OR REPLACE INTO {TIMELINES.name} VALUES ({columns})"
    registry = CollectorRegistry()
    runner = Runner(store, FoldSettings("push"), Metrics(registry))
    feed = _Feed()
    applying = [0.0]  # seconds inside store.apply, from the first slice on
    apply = store.apply

    async def timed_apply(mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        began = time.perf_counter()
        try:
            await apply(mutations, shard_id, sequence)
        finally:
            applying[0] += time.perf_counter() - began

    store.apply = timed_apply  # type: ignore[method-assign]
    try:
        world = _world()
        for i in range(0, len(world), 5000):
            await runner.handle(feed.batch(world[i:i + 5000]))
        applying[0] = 0.0
        followers = {f"a{a:02d}": sorted(await store.follower_ids(f"a{a:02d}")) for a in range(AUTHORS)}
        timings = {"store": 0.0, "bare": 0.0}
        counts = {"store": 0, "bare": 0}
        per_slice = max(1, batches_per_side // SLICES)
        batch_no = 0
        last_store_post: PostCreated | None = None
        for slice_ in range(SLICES):
            order = ["store", "bare"] if slice_ % 2 == 0 else ["bare", "store"]
            for side in order:
                batches = [_posts(batch_no + k) for k in range(per_slice)]
                batch_no += per_slice
                if side == "store":
                    deliveries_before = registry.get_sample_value(
                        "fanline_timeline_deliveries_total", {"strategy": "push"}) or 0.0
                    began = time.perf_counter()
                    for events in batches:
                        await runner.handle(feed.batch(events))
                    timings["store"] += time.perf_counter() - began
                    last_store_post = batches[-1][-1]
                    delivered = registry.get_sample_value(
                        "fanline_timeline_deliveries_total", {"strategy": "push"}) or 0.0
                    counts["store"] += int(delivered - deliveries_before)
                else:
                    # Grouped by timeline, in the order the Runner writes them (a stable sort on
                    # the owner): the bare side gets the same help.
                    rows = [sorted(_rows(events, followers), key=itemgetter(0)) for events in batches]
                    began = time.perf_counter()
                    for batch_rows in rows:
                        bare.execute("BEGIN IMMEDIATE")
                        bare.executemany(insert, batch_rows)
                        bare.execute("COMMIT")
                    timings["bare"] += time.perf_counter() - began
                    counts["bare"] += sum(len(r) for r in rows)
        # The store really wrote them all: every entry of its last batch is there.
        expected = BATCH_POSTS * (FOLLOWERS + 1) * per_slice * SLICES
        if counts["store"] != expected:
            raise RuntimeError(f"the store delivered {counts['store']} entries, not {expected}")
        newest = last_store_post
        assert newest is not None
        for owner in [newest.data.author_id, *followers[newest.data.author_id]]:
            page = await store.timeline_page(owner, 800, None)
            if newest.data.post_id not in {e.post_id for e in page}:
                raise RuntimeError(f"{newest.data.post_id} is missing from {owner}'s timeline")
    finally:
        await store.close()
        bare.close()
    store_dps = counts["store"] / timings["store"]
    bare_dps = counts["bare"] / timings["bare"]
    return {
        "deliveries_per_s": round(store_dps, 1),
        "bare_executemany_rows_per_s": round(bare_dps, 1),
        "deliveries_ratio": round(store_dps / bare_dps, 3),
        "deliveries": counts["store"],
        "store_apply_us": round(applying[0] / counts["store"] * 1e6, 2),
        "runner_us": round((timings["store"] - applying[0]) / counts["store"] * 1e6, 2),
        "bare_us": round(timings["bare"] / counts["bare"] * 1e6, 2),
    }


async def _dynamodb_ratio(directory: Path) -> dict[str, float]:
    # Our own throwaway dynalite accepts any credentials; the SDK insists on some.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    emulator = emulators.start("dynalite", directory / "dynalite")
    try:
        return await measure_dynamodb_ratio(emulator.endpoint_url)
    finally:
        emulator.stop()


@click.command("fanout")
@click.option("--batches", default=12, show_default=True,
              help=f"batches of {BATCH_POSTS} posts per side ({BATCH_POSTS * FOLLOWERS:,} deliveries each)")
def bench_fanout(batches: int) -> None:
    """Push fan-out deliveries/s through Runner + SQLiteStore against a bare executemany."""
    with tempfile.TemporaryDirectory(prefix="fanline-bench-fanout-") as tmp:
        directory = Path(tmp)
        figures = asyncio.run(measure_fanout(directory, batches))
        click.echo(
            f"push fan-out through Runner + SQLiteStore: {figures['deliveries_per_s']:,.0f} deliveries/s; "
            f"bare executemany: {figures['bare_executemany_rows_per_s']:,.0f} rows/s; "
            f"ratio {figures['deliveries_ratio']}"
        )
        click.echo(
            f"per delivery: {figures['runner_us']} us in the Runner (state, fold, coalesce, metrics) + "
            f"{figures['store_apply_us']} us in SQLiteStore.apply (rows, executemany, commit); "
            f"bare: {figures['bare_us']} us per row"
        )
        dynamodb = asyncio.run(_dynamodb_ratio(directory))
        click.echo("DynamoDBStore on dynalite: " + ", ".join(f"{k}={v}" for k, v in dynamodb.items()))
        figures["dynamodb_ratio"] = dynamodb["dynamodb_ratio"]
    # The machine's 2 cores are shared: the load says how much to trust the figures.
    figures["load_avg_1m"] = round(os.getloadavg()[0], 2)
    click.echo(json.dumps(figures))
