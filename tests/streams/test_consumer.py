"""The shard consumer: delivery, failures, takeover across processes, SIGTERM, resharding."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from fanline.benchmarks.consume import measure_consume_eps
from fanline.emulators import Emulator
from streams.consumer import Consumer, leases_to_take, parents_first, position_after
from streams.delivery import Batch, Delivered, Undecodable
from streams.dynamodb_leases import DynamoDBLeaseStore
from streams.events import PostCreated, PostCreatedData, encode
from streams.kinesis_log import KinesisLog
from streams.leases import SHARD_END, TRIM_HORIZON, Lease, LeaseStore
from streams.log import HASH_KEY_MAX, Appended, Log, Position, ReadResult, Shard, ShardReader
from streams.sqlite_leases import SQLiteLeaseStore
from streams.sqlite_log import SQLiteLog

ROOT = Path(__file__).resolve().parents[2]


def post(n: int, author: str) -> tuple[str, bytes]:
    data = PostCreatedData(post_id=f"p-{n}", author_id=author, body="hi")
    event = PostCreated(id=f"e-{n}", ts=n, data=data)
    return author, encode(event)


def posts(start: int, count: int, authors: int = 40) -> list[tuple[str, bytes]]:
    return [post(n, f"author-{n % authors}") for n in range(start, start + count)]


def last_per_shard(appended: list[Appended]) -> dict[str, str]:
    last: dict[str, str] = {}
    for a in appended:
        if a.shard_id not in last or int(a.sequence) > int(last[a.shard_id]):
            last[a.shard_id] = a.sequence
    return last


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll `check` (sync or async) until it holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer if isinstance(answer, bool) else await answer:
            return
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.05)


async def checkpoints(leases: LeaseStore) -> dict[str, str]:
    return {lease.shard_id: lease.checkpoint for lease in await leases.list()}


def checkpointed(leases: LeaseStore, last: dict[str, str]) -> Callable[[], Awaitable[bool]]:
    """A check: every shard in `last` is checkpointed at its last sequence."""

    async def check() -> bool:
        now = await checkpoints(leases)
        return all(now.get(shard) == seq for shard, seq in last.items())

    return check


def owned_by(leases: SQLiteLeaseStore, expected: set[str | None]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return {lease.owner for lease in await leases.list()} == expected

    return check


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SQLiteLog]:
    log = SQLiteLog(tmp_path / "log.sqlite", shard_count=4)
    yield log
    await log.close()


@pytest.fixture
async def leases(tmp_path: Path) -> AsyncIterator[SQLiteLeaseStore]:
    store = SQLiteLeaseStore(tmp_path / "leases.sqlite")
    yield store
    await store.close()


class Running:
    """A consumer running in a task of this event loop, stopped (and awaited) by `finish`."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.task = asyncio.create_task(consumer.run())

    async def finish(self) -> None:
        self.consumer.stop()
        await asyncio.wait_for(self.task, 10)


def consume(
    log: Log,
    leases: LeaseStore,
    handler: Callable[[Batch], Awaitable[None]],
    *,
    lease_timeout_s: float = 3.0,
    batch_size: int = 37,
    idle_wait_s: float = 1.0,
) -> Running:
    consumer = Consumer(
        log, leases, handler, worker_id="w1", lease_timeout_s=lease_timeout_s, batch_size=batch_size,
        idle_wait_s=idle_wait_s, retry_initial_s=0.01,
    )
    return Running(consumer)


# --- pure rules ---------------------------------------------------------------------------------
def lease(
    shard_id: str, owner: str | None, checkpoint: str = TRIM_HORIZON, parents: tuple[str, ...] = ()
) -> Lease:
    return Lease(shard_id, owner, 1, checkpoint, parents)


def test_position_after_a_checkpoint() -> None:
    assert position_after(TRIM_HORIZON) == Position.trim_horizon()
    assert position_after("42") == Position.after("42")
    with pytest.raises(ValueError, match="SHARD_END"):
        position_after(SHARD_END)


def test_parents_come_before_children() -> None:
    child = Shard("c", ("p", "q"), 0, HASH_KEY_MAX)
    grandchild = Shard("g", ("c",), 0, HASH_KEY_MAX)
    shards = [grandchild, child, Shard("q", (), 0, 1), Shard("p", (), 2, 3)]
    ordered = [s.shard_id for s in parents_first(shards)]
    assert ordered.index("c") > max(ordered.index("p"), ordered.index("q"))
    assert ordered.index("g") > ordered.index("c")


def test_take_every_free_lease_when_alone() -> None:
    leases = [lease(f"s{i}", None) for i in range(4)]
    assert leases_to_take(leases, "me", held=set(), expired=set()) == leases


def test_take_only_up_to_the_fair_share_and_expired_leases_count_as_free() -> None:
    leases = [lease("s0", "a"), lease("s1", "a"), lease("s2", None), lease("s3", "b"), lease("s4", "b")]
    # Three live workers (a, b, me), five leases: a fair share is two.
    assert leases_to_take(leases, "me", held=set(), expired=set()) == [leases[2]]
    # b is dead (its counters stood still): two workers share five, a fair share is three.
    assert leases_to_take(leases, "me", held=set(), expired={"s3", "s4"}) == [leases[2], leases[3], leases[4]]


def test_steal_one_lease_from_the_most_loaded_worker_only_above_the_fair_share() -> None:
    leases = [lease(f"s{i}", "a") for i in range(4)]
    assert leases_to_take(leases, "me", held=set(), expired=set()) == [leases[0]]
    balanced = [lease("s0", "me"), lease("s1", "me"), lease("s2", "a"), lease("s3", "a")]
    assert leases_to_take(balanced, "me", held={"s0", "s1"}, expired=set()) == []
    odd = [lease("s0", "me"), lease("s1", "a"), lease("s2", "a")]
    assert leases_to_take(odd, "me", held={"s0"}, expired=set()) == []  # 2 is a's fair share of 3


def test_a_child_is_taken_only_when_all_its_parents_reached_shard_end() -> None:
    child = lease("c", None, parents=("p", "q"))
    running = [lease("p", None, SHARD_END), lease("q", "a", "17"), child]
    assert child not in leases_to_take(running, "me", held=set(), expired=set())
    done = [lease("p", None, SHARD_END), lease("q", None, SHARD_END), child]
    assert leases_to_take(done, "me", held=set(), expired=set()) == [child]
    assert leases_to_take([child], "me", held=set(), expired=set()) == [child]  # parents trimmed


def test_a_lease_in_my_name_that_i_do_not_process_is_mine_to_take_again() -> None:
    mine = lease("s0", "me", "9")
    assert leases_to_take([mine, lease("s1", "a")], "me", held=set(), expired=set()) == [mine]


# --- one consumer in this process ------------------------------------------------------------
async def test_every_record_of_4_shards_is_delivered_once_in_order_then_stop_releases(
    log: SQLiteLog, leases: SQLiteLeaseStore
) -> None:
    appended: list[Appended] = []
    for start in range(0, 600, 200):
        appended += await log.append(posts(start, 200))
    got: dict[str, list[tuple[str, str]]] = defaultdict(list)

    async def handler(batch: Batch) -> None:
        assert all(isinstance(item, Delivered) and item.shard_id == batch.shard_id for item in batch.items)
        got[batch.shard_id] += [(i.sequence, i.event.id) for i in batch.items if isinstance(i, Delivered)]

    running = consume(log, leases, handler)
    try:
        last = last_per_shard(appended)
        await eventually(checkpointed(leases, last), 20, "every shard checkpointed")
    finally:
        await running.finish()
    expected: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for n, a in enumerate(appended):
        expected[a.shard_id].append((a.sequence, f"e-{n}"))
    assert len(expected) == 4
    assert got == expected
    assert {(lease.owner, lease.checkpoint) for lease in await leases.list()} == {
        (None, seq) for seq in last.values()
    }


async def test_a_consumer_on_dynamodb_leases_delivers_everything_and_releases(
    log: SQLiteLog, dynalite: Emulator
) -> None:
    table = f"leases-{uuid.uuid4().hex[:8]}"
    leases = await DynamoDBLeaseStore.connect(table, endpoint_url=dynalite.endpoint_url)
    await leases.ensure_table()
    appended = await log.append(posts(0, 300))
    got: list[str] = []

    async def handler(batch: Batch) -> None:
        got.extend(item.sequence for item in batch.items)

    try:
        running = consume(log, leases, handler)
        try:
            await eventually(checkpointed(leases, last_per_shard(appended)), 20, "every shard checkpointed")
        finally:
            await running.finish()
        assert sorted(got) == sorted(a.sequence for a in appended)
        assert {lease.owner for lease in await leases.list()} == {None}
    finally:
        await leases.client.delete_table(TableName=leases.table_name)
        await leases.close()


async def test_undecodable_records_arrive_in_place_with_shard_and_sequence(
    log: SQLiteLog, leases: SQLiteLeaseStore
) -> None:
    unknown_type = b'{"type":"Nope","id":"x","ts":1,"data":{}}'
    raw = [("k", b"not json"), post(1, "k"), ("k", unknown_type), post(2, "k")]
    appended = await log.append(raw)
    items: list[Delivered | Undecodable] = []

    async def handler(batch: Batch) -> None:
        items.extend(batch.items)

    running = consume(log, leases, handler)
    try:
        await eventually(lambda: len(items) >= 4, 10, "4 items")
    finally:
        await running.finish()
    assert [(i.shard_id, i.sequence) for i in items] == [(a.shard_id, a.sequence) for a in appended]
    bad = [items[0], items[2]]
    assert all(isinstance(i, Undecodable) for i in bad)
    assert [i.data for i in bad if isinstance(i, Undecodable)] == [raw[0][1], raw[2][1]]
    assert all(i.error for i in bad if isinstance(i, Undecodable))
    assert [i.event.id for i in items if isinstance(i, Delivered)] == ["e-1", "e-2"]


class CountingLog:
    """An SQLiteLog whose readers count the reads they make."""

    def __init__(self, log: SQLiteLog) -> None:
        self.log = log
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.log, name)

    def reader(self, shard_id: str, position: Position) -> CountingReader:
        return CountingReader(self, self.log.reader(shard_id, position))


class CountingReader:
    def __init__(self, log: CountingLog, reader: ShardReader) -> None:
        self.log, self.reader = log, reader

    async def read(self, limit: int = 1000) -> ReadResult:
        self.log.reads += 1
        return await self.reader.read(limit)


async def test_idle_shards_wait_for_records_instead_of_polling(
    log: SQLiteLog, leases: SQLiteLeaseStore
) -> None:
    counting = CountingLog(log)
    got: list[str] = []

    async def handler(batch: Batch) -> None:
        got.extend(item.sequence for item in batch.items)

    running = consume(counting, leases, handler)  # type: ignore[arg-type]
    try:
        await asyncio.sleep(1.0)  # an empty log: 4 idle shards
        idle_reads = counting.reads
        appended = await log.append(posts(0, 8))
        await eventually(lambda: len(got) == 8, 5, "the records appended while idle")
    finally:
        await running.finish()
    # One read per shard and wait (idle_wait_s is 1 s); a polling loop would make thousands.
    assert idle_reads <= 12
    assert sorted(got) == sorted(a.sequence for a in appended)


async def test_a_failing_handler_gets_the_same_batch_again_and_nothing_is_checkpointed_meanwhile(
    log: SQLiteLog, leases: SQLiteLeaseStore
) -> None:
    appended = await log.append(posts(0, 100, authors=1))  # one shard
    shard_id = appended[0].shard_id
    calls: list[list[str]] = []

    async def handler(batch: Batch) -> None:
        calls.append([item.sequence for item in batch.items])
        [lease] = [lease for lease in await leases.list() if lease.shard_id == shard_id]
        # The batch is not checkpointed before the handler returns.
        assert lease.checkpoint == TRIM_HORIZON or int(lease.checkpoint) < int(batch.items[0].sequence)
        if len(calls) in (2, 3):
            raise RuntimeError("projection store down")

    running = consume(log, leases, handler)
    try:
        done = checkpointed(leases, {shard_id: appended[-1].sequence})
        await eventually(done, 10, "the shard checkpointed")
    finally:
        await running.finish()
    assert calls[1] == calls[2] == calls[3]  # redelivered, not skipped
    delivered = [seq for i, call in enumerate(calls) if i not in (1, 2) for seq in call]
    assert delivered == [a.sequence for a in appended]


async def test_a_lost_lease_stops_its_shard_at_once(
    log: SQLiteLog, leases: SQLiteLeaseStore, tmp_path: Path
) -> None:
    appended = await log.append(posts(0, 200, authors=1))
    shard_id = appended[0].shard_id
    thief = SQLiteLeaseStore(tmp_path / "leases.sqlite")
    batches: list[Batch] = []
    stolen: list[Lease] = []

    async def handler(batch: Batch) -> None:
        batches.append(batch)
        if len(batches) == 2:  # another worker takes the lease while we handle this batch
            [held] = [lease for lease in await thief.list() if lease.shard_id == shard_id]
            taken = await thief.take(held, "thief")
            assert taken is not None
            stolen.append(taken)

    running = consume(log, leases, handler, lease_timeout_s=60.0)
    try:
        await eventually(lambda: len(batches) >= 2, 10, "2 batches")
        await asyncio.sleep(0.5)  # time for more batches, if the consumer wrongly went on
    finally:
        await running.finish()
        await thief.close()
    assert len(batches) == 2
    [after] = [lease for lease in await leases.list() if lease.shard_id == shard_id]
    assert after == stolen[0]  # its checkpoint of the second batch failed; nothing changed


# --- worker processes ----------------------------------------------------------------------------
def start_worker(tmp_path: Path, worker_id: str, **options: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tests.streams.consumer_worker", str(tmp_path / "log.sqlite"),
            str(tmp_path / "leases.sqlite"), str(tmp_path / f"{worker_id}.sqlite"), "--worker-id", worker_id]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", value]
    return subprocess.Popen(args, cwd=ROOT)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()


def processed(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [(shard, seq) for shard, seq in db.execute("SELECT shard, seq FROM processed")]


async def test_sigterm_finishes_checkpoints_and_releases_every_lease(
    log: SQLiteLog, leases: SQLiteLeaseStore, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    appended = await log.append(posts(0, 400))
    worker = start_worker(tmp_path, "w1", delay="0.05")
    processes.append(worker)
    await eventually(owned_by(leases, {"w1"}), 15, "w1 holding every lease")
    await eventually(lambda: len(processed(tmp_path / "w1.sqlite")) > 0, 15, "progress")
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    after = await leases.list()
    assert {lease.owner for lease in after} == {None}
    done = set(processed(tmp_path / "w1.sqlite"))
    appended_keys = {(a.shard_id, a.sequence) for a in appended}
    for lease in after:
        # The checkpoint kept is the last record handled on that shard (the batch in hand was finished).
        mine = [int(seq) for shard, seq in done if shard == lease.shard_id]
        assert lease.checkpoint == (str(max(mine)) if mine else TRIM_HORIZON)
        assert lease.checkpoint == TRIM_HORIZON or (lease.shard_id, lease.checkpoint) in appended_keys


async def test_a_killed_worker_loses_nothing_the_other_takes_over(
    log: SQLiteLog, leases: SQLiteLeaseStore, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    appended = await log.append(posts(0, 1000, authors=100))
    # w1 is slow, so it has a backlog when it dies; w2 is quick, so it catches up after.
    processes.append(start_worker(tmp_path, "w1", lease_timeout="1.5", delay="0.1"))
    await eventually(owned_by(leases, {"w1"}), 15, "w1 holding every lease")
    processes.append(start_worker(tmp_path, "w2", lease_timeout="1.5", delay="0.005"))
    await eventually(owned_by(leases, {"w1", "w2"}), 15, "the two sharing the shards")

    async def keep_appending() -> None:
        for start in range(1000, 4000, 100):
            appended.extend(await log.append(posts(start, 100, authors=100)))
            await asyncio.sleep(0.05)

    appending = asyncio.create_task(keep_appending())
    try:
        await asyncio.sleep(0.3)
        w1_shards = {lease.shard_id for lease in await leases.list() if lease.owner == "w1"}
        os.kill(processes[0].pid, signal.SIGKILL)  # mid-stream: records arrive before and after
        processes[0].wait()
        assert not appending.done()
    finally:
        await appending
    last = last_per_shard(appended)
    await eventually(checkpointed(leases, last), 30, "w2 finishing every shard")
    assert await owned_by(leases, {"w2"})()
    os.kill(processes[1].pid, signal.SIGTERM)
    assert processes[1].wait(timeout=15) == 0
    by_w1, by_w2 = processed(tmp_path / "w1.sqlite"), processed(tmp_path / "w2.sqlite")
    assert by_w1 and by_w2
    assert w1_shards <= {shard for shard, _ in by_w2}  # w2 took over what w1 held when it died
    everything = {(a.shard_id, a.sequence) for a in appended}
    assert set(by_w1) | set(by_w2) == everything  # nothing lost, nothing made up
    # Per worker and shard, what it handled was in order (duplicates only across a takeover).
    for rows in (by_w1, by_w2):
        per_shard: dict[str, list[int]] = defaultdict(list)
        for shard, seq in rows:
            per_shard[shard].append(int(seq))
        assert all(seqs == sorted(seqs) for seqs in per_shard.values())


# --- resharding on kinesalite ------------------------------------------------------------------
async def test_a_split_shard_is_read_parent_first_on_kinesalite(
    kinesalite: Emulator, leases: SQLiteLeaseStore
) -> None:
    stream = f"split-{uuid.uuid4().hex[:8]}"
    log = await KinesisLog.connect(stream, endpoint_url=kinesalite.endpoint_url)
    try:
        await log.ensure_stream(shard_count=1)
        [parent] = await log.shards()
        before = await log.append(posts(0, 30, authors=10))
        await log.client.split_shard(
            StreamName=stream, ShardToSplit=parent.shard_id, NewStartingHashKey=str(2**127)
        )
        await log.ensure_stream(shard_count=1)  # waits until ACTIVE again
        after = await log.append(posts(30, 30, authors=10))
        assert {a.shard_id for a in after}.isdisjoint({parent.shard_id})
        order: list[tuple[str, str]] = []

        async def handler(batch: Batch) -> None:
            if batch.shard_id == parent.shard_id:
                await asyncio.sleep(0.2)  # a slow parent: children must wait for it all the same
            order.extend((item.shard_id, item.sequence) for item in batch.items)

        running = consume(log, leases, handler, lease_timeout_s=1.5, idle_wait_s=0.2, batch_size=10)
        try:
            await eventually(lambda: len(order) >= 60, 30, "60 records")
            await eventually(checkpointed(leases, {parent.shard_id: SHARD_END}), 5, "the parent's SHARD_END")
        finally:
            await running.finish()
    finally:
        await log.client.delete_stream(StreamName=stream)
        await log.close()
    assert order[:30] == [(a.shard_id, a.sequence) for a in before]  # the parent first, all of it
    assert sorted(order[30:]) == sorted((a.shard_id, a.sequence) for a in after)
    by_shard = {lease.shard_id: lease for lease in await leases.list()}
    assert by_shard[parent.shard_id].checkpoint == SHARD_END
    assert all(by_shard[a.shard_id].parent_ids == (parent.shard_id,) for a in after)


# --- the benchmark runs (its speed is reported, never asserted) -----------------------------------
async def test_the_consume_benchmark_reports_its_figures() -> None:
    figures = await measure_consume_eps(events=2000)
    assert figures["events"] == 2000
    assert set(figures) == {"events", "consume_eps", "bare_read_decode_eps", "consume_ratio"}
    assert all(value > 0 for value in figures.values())
