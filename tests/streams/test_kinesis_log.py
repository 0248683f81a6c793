"""KinesisLog against kinesalite: the Log contract, then what only Kinesis has: call limits,
partial PutRecords failures, resharding, throttled and refusing calls, expired iterators, pacing."""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fanline.benchmarks.kinesis import calls_per_append, make_batches, measure_kinesis_append_ratio
from fanline.emulators import Emulator, free_port
from streams.kinesis_log import MAX_BYTES_PER_CALL, MAX_RECORDS_PER_CALL, KinesisLog
from streams.log import Log, LogUnavailable, Position, Record, sequence_key
from tests.streams.log_contract import LogContract


def _fast(client: Any, stream_name: str, max_attempts: int = 8) -> KinesisLog:
    """A log over `client` that backs off for milliseconds, so retry tests stay quick."""
    return KinesisLog(
        client, stream_name, max_attempts=max_attempts, backoff_initial_s=0.001, backoff_max_s=0.01
    )


async def _open(kinesalite: Emulator, shard_count: int, **options: Any) -> KinesisLog:
    # Every test gets its own stream: kinesalite is shared by the whole session.
    name = f"test-{uuid.uuid4().hex[:12]}"
    log = await KinesisLog.connect(name, endpoint_url=kinesalite.endpoint_url, **options)
    await log.ensure_stream(shard_count)
    return log


class TestKinesisLog(LogContract):
    @pytest.fixture
    async def log(self, kinesalite: Emulator) -> AsyncIterator[Log]:
        log = await _open(kinesalite, 4)
        yield log
        await log.close()


@pytest.fixture
async def log(kinesalite: Emulator) -> AsyncIterator[KinesisLog]:
    log = await _open(kinesalite, 4, backoff_initial_s=0.001, backoff_max_s=0.01)
    yield log
    await log.close()


def _error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)


class Wrapped:
    """A stand-in client: delegates to the real one except for what a subclass overrides."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class FlakyPuts(Wrapped):
    """Fails a random share of each PutRecords call's entries, as Kinesis does under load.

    Failed entries are never sent to the real stream, the succeeding ones are, and the answer
    lists both in the call's order: exactly the shape of a partially failed PutRecords."""

    def __init__(self, real: Any, fail_rate: float, seed: int = 0) -> None:
        super().__init__(real)
        self.rng = random.Random(seed)
        self.fail_rate = fail_rate
        self.failed = 0
        self.calls: list[list[dict[str, Any]]] = []

    async def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Records)
        fail = [self.rng.random() < self.fail_rate for _ in Records]
        sent = [record for record, failed in zip(Records, fail, strict=True) if not failed]
        written: list[dict[str, Any]] = []
        if sent:
            written = (await self.real.put_records(StreamName=StreamName, Records=sent))["Records"]
        answers = iter(written)
        answer = []
        for failed in fail:
            if failed:
                answer.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "x"})
            else:
                answer.append(next(answers))
        self.failed += sum(fail)
        return {"FailedRecordCount": sum(fail), "Records": answer}


class RefusingPuts(Wrapped):
    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.calls = 0

    async def put_records(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        raise _error("ProvisionedThroughputExceededException", "PutRecords")


class FlakyGets(Wrapped):
    """GetRecords raising `code` for the next `failures` calls; remembers when each call came."""

    def __init__(self, real: Any, code: str = "ProvisionedThroughputExceededException") -> None:
        super().__init__(real)
        self.code = code
        self.failures = 0
        self.times: list[float] = []

    async def get_records(self, **kwargs: Any) -> dict[str, Any]:
        self.times.append(time.monotonic())
        if self.failures > 0:
            self.failures -= 1
            raise _error(self.code, "GetRecords")
        answer: dict[str, Any] = await self.real.get_records(**kwargs)
        return answer


async def _read_shard(log: KinesisLog, shard_id: str) -> list[Record]:
    """Read from the start until caught up (an empty read) or the shard is finished."""
    reader = log.reader(shard_id, Position.trim_horizon())
    records: list[Record] = []
    while True:
        result = await reader.read(10_000)
        records += result.records
        if result.end_of_shard or not result.records:
            return records


async def _read_all(log: KinesisLog) -> list[Record]:
    records: list[Record] = []
    for shard in await log.shards():
        records += await _read_shard(log, shard.shard_id)
    return records


# --- appending within Kinesis's limits ----------------------------------------------------------


async def test_calls_hold_at_most_500_records_and_each_key_once(log: KinesisLog) -> None:
    counting = FlakyPuts(log.client, fail_rate=0.0)
    entries = [(f"author-{i % 700}", b"x" * 10) for i in range(1500)]
    assert len(await KinesisLog(counting, log.stream_name).append(entries)) == 1500
    for call in counting.calls:
        keys = [record["PartitionKey"] for record in call]
        assert len(keys) == len(set(keys))
    # 700 keys, each 2 or 3 times: a call is filled with whatever key heads are ready, so
    # repeated keys cost no extra call here: 3 calls, the fewest 1500 records can take.
    assert [len(call) for call in counting.calls] == [MAX_RECORDS_PER_CALL] * 3


async def test_calls_stay_within_5_mib(log: KinesisLog) -> None:
    counting = FlakyPuts(log.client, fail_rate=0.0)
    big = b"y" * (900 * 1024)
    assert len(await KinesisLog(counting, log.stream_name).append([(f"k{i}", big) for i in range(7)])) == 7
    sizes = [sum(len(r["Data"]) + len(r["PartitionKey"]) for r in call) for call in counting.calls]
    assert len(sizes) == 2 and max(sizes) <= MAX_BYTES_PER_CALL


async def test_bad_input_is_refused_before_anything_is_written(log: KinesisLog) -> None:
    bad_batches: list[list[tuple[str, Any]]] = [
        [("ok", b"1"), ("", b"2")],
        [("ok", b"1"), ("k" * 257, b"2")],
        [("ok", b"1"), ("big", b"z" * (1024 * 1024))],
        [("ok", b"1"), ("ok", "not bytes")],
    ]
    for bad in bad_batches:
        with pytest.raises(ValueError, match=r"^entry 1: "):
            await log.append(bad)
    assert await _read_all(log) == []


async def test_partial_failures_keep_per_key_order_and_lose_or_repeat_nothing(log: KinesisLog) -> None:
    flaky = FlakyPuts(log.client, fail_rate=0.33, seed=42)
    appending = _fast(flaky, log.stream_name, max_attempts=30)
    rng = random.Random(7)
    entries = [(f"author-{rng.randrange(40)}", f"{i}".encode()) for i in range(800)]
    appended = await appending.append(entries)
    assert flaky.failed > 100  # retries really happened
    records = await _read_all(log)
    assert sorted(int(r.data) for r in records) == list(range(800))
    per_key: dict[str, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.shard_id, sequence_key(r.sequence))):
        per_key[record.partition_key].append(int(record.data))
    assert len(per_key) == 40
    for numbers in per_key.values():
        assert numbers == sorted(numbers)
    # Each answer, in input order, points at its own entry's record.
    where = {(r.shard_id, r.sequence): int(r.data) for r in records}
    assert [where[(a.shard_id, a.sequence)] for a in appended] == list(range(800))


# --- refusals -----------------------------------------------------------------------------------


async def test_a_refusing_log_raises_log_unavailable_after_bounded_retries(log: KinesisLog) -> None:
    refusing = RefusingPuts(log.client)
    with pytest.raises(LogUnavailable, match="ProvisionedThroughputExceeded"):
        await _fast(refusing, log.stream_name, max_attempts=4).append([("a", b"1"), ("b", b"2")])
    assert refusing.calls == 4
    assert await _read_all(log) == []


async def test_entries_failing_every_time_raise_and_later_records_of_their_keys_stay_unsent(
    log: KinesisLog,
) -> None:
    always = FlakyPuts(log.client, fail_rate=1.0)
    appending = _fast(always, log.stream_name, max_attempts=3)
    with pytest.raises(LogUnavailable, match="2 entries failed"):
        await appending.append([("a", b"1"), ("b", b"2"), ("a", b"3")])
    # Only the heads of "a" and "b", three times; "a"'s second record was never sent.
    assert [[r["Data"] for r in call] for call in always.calls] == [[b"1", b"2"]] * 3


async def test_a_missing_stream_is_refused_at_once(kinesalite: Emulator) -> None:
    log = await KinesisLog.connect("never-created", endpoint_url=kinesalite.endpoint_url)
    try:
        with pytest.raises(LogUnavailable, match="ResourceNotFound"):
            await log.append([("a", b"1")])
        with pytest.raises(LogUnavailable, match="ResourceNotFound"):
            await log.shards()
    finally:
        await log.close()


async def test_an_unreachable_endpoint_is_retried_then_refused() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on
    log = await KinesisLog.connect("s", endpoint_url=nobody, max_attempts=3, backoff_max_s=0.01)
    try:
        with pytest.raises(LogUnavailable, match=r"gave up after 3 attempts"):
            await log.append([("a", b"1")])
    finally:
        await log.close()


async def test_throttled_reads_are_retried_then_refused(log: KinesisLog) -> None:
    [appended] = await log.append([("a", b"1")])
    flaky = FlakyGets(log.client)
    reading = _fast(flaky, log.stream_name, max_attempts=3)
    flaky.failures = 2
    result = await reading.reader(appended.shard_id, Position.trim_horizon()).read()
    assert [r.data for r in result.records] == [b"1"]
    flaky.failures = 3
    with pytest.raises(LogUnavailable, match="GetRecords"):
        await reading.reader(appended.shard_id, Position.trim_horizon()).read()


# --- reading --------------------------------------------------------------------------------------


async def test_an_expired_iterator_is_recreated_after_the_last_record_read(log: KinesisLog) -> None:
    appended = await log.append([("same", f"{i}".encode()) for i in range(6)])
    flaky = FlakyGets(log.client, code="ExpiredIteratorException")
    reader = KinesisLog(flaky, log.stream_name).reader(appended[0].shard_id, Position.trim_horizon())
    first = await reader.read(3)
    flaky.failures = 1
    second = await reader.read(3)
    assert [r.data for r in first.records + second.records] == [f"{i}".encode() for i in range(6)]


async def test_get_records_is_called_at_most_5_times_per_second_per_shard(log: KinesisLog) -> None:
    [appended] = await log.append([("k", b"1")])
    timed = FlakyGets(log.client)
    reading = KinesisLog(timed, log.stream_name)
    # Two readers of one shard share its budget.
    readers = [reading.reader(appended.shard_id, Position.trim_horizon()) for _ in range(2)]
    for _ in range(3):
        for reader in readers:
            await reader.read()
    assert len(timed.times) == 6
    assert min(b - a for a, b in itertools.pairwise(timed.times)) >= 0.19


# --- resharding -----------------------------------------------------------------------------------


async def test_a_split_shard_is_listed_with_its_parent_and_ending_sequence(kinesalite: Emulator) -> None:
    log = await _open(kinesalite, 1)
    try:
        before = await log.append([(f"u{i}", b"before") for i in range(20)])
        [parent] = await log.shards()
        assert parent.parent_ids == () and not parent.closed
        # UpdateShardCount is missing in kinesalite; SplitShard is what it does underneath.
        await log.client.split_shard(
            StreamName=log.stream_name, ShardToSplit=parent.shard_id, NewStartingHashKey=str(2**127)
        )
        await log.ensure_stream(1)  # waits until ACTIVE again
        shards = {s.shard_id: s for s in await log.shards()}
        assert len(shards) == 3
        closed = shards[parent.shard_id]
        assert closed.ending_sequence is not None
        assert all(sequence_key(a.sequence) <= sequence_key(closed.ending_sequence) for a in before)
        children = sorted(
            (s for s in shards.values() if s.shard_id != parent.shard_id), key=lambda s: s.starting_hash_key
        )
        assert [c.parent_ids for c in children] == [(parent.shard_id,)] * 2
        assert [(c.starting_hash_key, c.ending_hash_key) for c in children] == [
            (0, 2**127 - 1),
            (2**127, 2**128 - 1),
        ]
        # New records land in a child; the parent keeps exactly what it had.
        [after] = await log.append([("u1", b"after")])
        assert after.shard_id in {c.shard_id for c in children}
        assert len(await _read_shard(log, parent.shard_id)) == 20
        # Merging the children gives one shard with both as parents (AdjacentParentShardId).
        await log.client.merge_shards(
            StreamName=log.stream_name, ShardToMerge=children[0].shard_id,
            AdjacentShardToMerge=children[1].shard_id,
        )
        await log.ensure_stream(1)
        [merged] = [s for s in await log.shards() if len(s.parent_ids) == 2]
        assert merged.parent_ids == (children[0].shard_id, children[1].shard_id) and not merged.closed
    finally:
        await log.close()


async def test_a_closed_shard_read_to_its_end_reports_end_of_shard(kinesalite: Emulator) -> None:
    log = await _open(kinesalite, 1)
    try:
        await log.append([("a", b"1"), ("b", b"2")])
        [parent] = await log.shards()
        await log.client.split_shard(
            StreamName=log.stream_name, ShardToSplit=parent.shard_id, NewStartingHashKey=str(2**127)
        )
        await log.ensure_stream(1)
        reader = log.reader(parent.shard_id, Position.trim_horizon())
        seen: list[bytes] = []
        for _ in range(5):
            result = await reader.read(1)
            seen += [r.data for r in result.records]
            if result.end_of_shard:
                break
        assert result.end_of_shard and seen == [b"1", b"2"]
        again = await reader.read()  # costs no call: the shard is finished
        assert again.end_of_shard and again.records == []
    finally:
        await log.close()


# --- the benchmark (figures are printed, never asserted) ------------------------------------------


async def test_the_append_benchmark_answers_its_figures(kinesalite: Emulator) -> None:
    figures = await measure_kinesis_append_ratio(kinesalite.endpoint_url, seconds=0.6)
    assert figures["kinesis_append_eps"] > 0 and figures["bare_put_records_eps"] > 0
    ratio = figures["kinesis_append_eps"] / figures["bare_put_records_eps"]
    assert figures["kinesis_append_ratio"] == pytest.approx(ratio, abs=0.002)
    assert 150 <= figures["event_bytes"] <= 260  # ~200-byte PostCreated events, as promised


def test_calls_per_append_is_the_most_repeated_key_count() -> None:
    assert calls_per_append([[("a", b""), ("b", b""), ("a", b""), ("a", b"")], [("c", b"")]]) == 2.0
    uniform = make_batches(5)
    assert all(len(batch) == 500 for batch in uniform)
    assert calls_per_append(uniform) < calls_per_append(make_batches(5, author_skew=1.0))
