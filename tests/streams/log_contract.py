"""The Log contract: every adapter passes these tests.

`LogContract` is not collected itself (its name does not start with Test). Each adapter's test
module subclasses it once with an async `log` fixture giving a fresh, empty log of 4 open shards
(and closing it afterwards), e.g.:

    class TestSQLiteLog(LogContract):
        @pytest.fixture
        async def log(self, tmp_path: Path) -> AsyncIterator[Log]:
            log = SQLiteLog(tmp_path / "log.sqlite", shard_count=4)
            yield log
            await log.close()

The tests read few times per shard: the Kinesis adapter paces GetRecords (kinesalite allows
5 per second per shard), so every read costs time there.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import defaultdict

from streams.log import HASH_KEY_MAX, Appended, Log, Position, Record, Shard, hash_key, sequence_key

SHARD_COUNT = 4
# Enough keys that every one of 4 shards gets some (checked in `test_keys_spread_over_all_shards`).
KEYS = [f"user-{i}" for i in range(40)]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def shard_for(shards: list[Shard], key: str) -> str:
    h = hash_key(key)
    [shard] = [s for s in shards if not s.closed and s.starting_hash_key <= h <= s.ending_hash_key]
    return shard.shard_id


async def read_n(log: Log, shard_id: str, position: Position, n: int, limit: int = 1000) -> list[Record]:
    """Read one shard from `position` until `n` records came back (a bounded number of reads)."""
    reader = log.reader(shard_id, position)
    records: list[Record] = []
    for _ in range(10):
        if len(records) >= n:
            break
        result = await reader.read(limit)
        assert not result.end_of_shard  # every shard of a fresh log is open
        records.extend(result.records)
    assert len(records) == n, f"expected {n} records on {shard_id}, read {len(records)}"
    return records


def entries_for(key: str, count: int, tag: str) -> list[tuple[str, bytes]]:
    return [(key, f"{tag}-{i}".encode()) for i in range(count)]


class LogContract:
    # --- shards ----------------------------------------------------------------------------
    async def test_shards_cover_the_hash_key_range_without_gaps(self, log: Log) -> None:
        shards = sorted(await log.shards(), key=lambda s: s.starting_hash_key)
        assert len(shards) == SHARD_COUNT
        assert len({s.shard_id for s in shards}) == SHARD_COUNT
        assert all(not s.closed and s.parent_ids == () for s in shards)
        assert shards[0].starting_hash_key == 0
        for left, right in itertools.pairwise(shards):
            assert right.starting_hash_key == left.ending_hash_key + 1
        assert shards[-1].ending_hash_key == HASH_KEY_MAX

    # --- append ----------------------------------------------------------------------------
    async def test_append_nothing_answers_nothing(self, log: Log) -> None:
        assert await log.append([]) == []

    async def test_append_answers_one_appended_per_entry_in_order(self, log: Log) -> None:
        shards = await log.shards()
        entries = [(key, f"data-{key}".encode()) for key in KEYS]
        appended = await log.append(entries)
        assert len(appended) == len(entries)
        assert all(isinstance(a, Appended) for a in appended)
        # In order: the i-th answer is the i-th entry's, so its shard is the entry key's shard.
        assert [a.shard_id for a in appended] == [shard_for(shards, key) for key, _ in entries]
        assert len({(a.shard_id, a.sequence) for a in appended}) == len(entries)

    async def test_keys_spread_over_all_shards(self, log: Log) -> None:
        appended = await log.append([(key, b"x") for key in KEYS])
        assert {a.shard_id for a in appended} == {s.shard_id for s in await log.shards()}

    async def test_a_key_lands_on_the_shard_whose_hash_range_holds_its_hash(self, log: Log) -> None:
        shards = {s.shard_id: s for s in await log.shards()}
        keys = [*KEYS, "ü", "🙂", "a" * 256]  # Kinesis allows keys of up to 256 characters
        appended = await log.append([(key, b"x") for key in keys])
        for key, a in zip(keys, appended, strict=True):
            shard = shards[a.shard_id]
            assert shard.starting_hash_key <= hash_key(key) <= shard.ending_hash_key, key

    async def test_sequences_strictly_increase_per_shard(self, log: Log) -> None:
        last: dict[str, int] = {}
        for batch in range(3):
            appended = await log.append([(key, f"{batch}".encode()) for key in KEYS])
            for a in appended:
                seq = sequence_key(a.sequence)
                assert seq > last.get(a.shard_id, -1), (a, last.get(a.shard_id))
                last[a.shard_id] = seq

    async def test_records_of_one_key_keep_their_order_across_batches(self, log: Log) -> None:
        shards = await log.shards()
        sent: list[bytes] = []
        for batch in range(3):
            # The same key several times in one batch, other keys between.
            entries = [("alice", f"{batch}-{i}".encode()) for i in range(5)] + [
                (key, b"other") for key in KEYS[:5]
            ]
            entries = [e for pair in zip(entries[:5], entries[5:], strict=True) for e in pair]
            await log.append(entries)
            sent.extend(data for key, data in entries if key == "alice")
        shard_id = shard_for(shards, "alice")
        others_there = sum(1 for key in KEYS[:5] if shard_for(shards, key) == shard_id) * 3
        records = await read_n(log, shard_id, Position.trim_horizon(), len(sent) + others_there)
        assert [r.data for r in records if r.partition_key == "alice"] == sent
        assert all(r.shard_id == shard_id for r in records)

    # --- reading from each kind of position ---------------------------------------------------
    async def test_read_from_trim_horizon_gives_every_record_with_its_fields(self, log: Log) -> None:
        before = now_ms()
        appended = await log.append(entries_for("bob", 6, "r"))
        after = now_ms()
        records = await read_n(log, appended[0].shard_id, Position.trim_horizon(), 6)
        assert [(r.shard_id, r.sequence) for r in records] == [(a.shard_id, a.sequence) for a in appended]
        assert [r.data for r in records] == [f"r-{i}".encode() for i in range(6)]
        assert {r.partition_key for r in records} == {"bob"}
        # The log assigns the arrival time; allow a second either way for clock granularity.
        assert all(before - 1000 <= r.arrival_ms <= after + 1000 for r in records)

    async def test_read_at_and_after_a_sequence(self, log: Log) -> None:
        appended = await log.append(entries_for("bob", 6, "r"))
        shard_id = appended[0].shard_id
        at = await read_n(log, shard_id, Position.at(appended[2].sequence), 4)
        assert [r.sequence for r in at] == [a.sequence for a in appended[2:]]
        after = await read_n(log, shard_id, Position.after(appended[2].sequence), 3)
        assert [r.sequence for r in after] == [a.sequence for a in appended[3:]]

    async def test_read_from_latest_gives_only_later_records(self, log: Log) -> None:
        await log.append(entries_for("bob", 3, "old"))
        shard_id = shard_for(await log.shards(), "bob")
        reader = log.reader(shard_id, Position.latest())
        assert (await reader.read()).records == []
        await log.append(entries_for("bob", 2, "new"))
        result = await reader.read()
        assert [r.data for r in result.records] == [b"new-0", b"new-1"]

    async def test_read_at_a_timestamp(self, log: Log) -> None:
        await log.append(entries_for("bob", 3, "old"))
        await asyncio.sleep(0.1)
        cut = now_ms()
        await asyncio.sleep(0.1)
        appended = await log.append(entries_for("bob", 2, "new"))
        records = await read_n(log, appended[0].shard_id, Position.at_timestamp(cut), 2)
        assert [r.data for r in records] == [b"new-0", b"new-1"]

    async def test_a_reader_continues_where_it_stopped_and_is_empty_when_caught_up(self, log: Log) -> None:
        appended = await log.append(entries_for("bob", 5, "r"))
        reader = log.reader(appended[0].shard_id, Position.trim_horizon())
        pages = [(await reader.read(limit=2)).records for _ in range(3)]
        assert [[r.data for r in page] for page in pages] == [
            [b"r-0", b"r-1"],
            [b"r-2", b"r-3"],
            [b"r-4"],
        ]
        caught_up = await reader.read(limit=2)
        assert caught_up.records == []
        assert caught_up.millis_behind == 0
        await log.append(entries_for("bob", 1, "later"))
        assert [r.data for r in (await reader.read(limit=2)).records] == [b"later-0"]

    # --- waiting -----------------------------------------------------------------------------
    async def test_wait_for_records_wakes_soon_after_an_append(self, log: Log) -> None:
        async def append_later() -> float:
            await asyncio.sleep(0.2)
            await log.append(entries_for("bob", 1, "w"))
            return time.monotonic()

        appending = asyncio.create_task(append_later())
        await log.wait_for_records(timeout_s=5.0)
        woke = time.monotonic()
        appended_at = await appending
        assert woke - appended_at < 0.5

    async def test_wait_for_records_without_appends_waits_about_its_timeout(self, log: Log) -> None:
        start = time.monotonic()
        await log.wait_for_records(timeout_s=0.3)
        assert 0.25 <= time.monotonic() - start < 1.5

    # --- large batches -----------------------------------------------------------------------
    async def test_a_batch_of_500_records_round_trips_byte_exact(self, log: Log) -> None:
        # Arbitrary bytes (not only UTF-8), ~200 bytes each as events are.
        entries = [(KEYS[i % len(KEYS)], os.urandom(180 + i % 40)) for i in range(500)]
        appended = await log.append(entries)
        assert len(appended) == 500
        sent: dict[str, dict[str, bytes]] = defaultdict(dict)
        for (_, data), a in zip(entries, appended, strict=True):
            sent[a.shard_id][a.sequence] = data
        for shard_id, by_sequence in sent.items():
            records = await read_n(log, shard_id, Position.trim_horizon(), len(by_sequence))
            assert {r.sequence: r.data for r in records} == by_sequence
