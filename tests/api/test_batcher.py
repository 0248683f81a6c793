"""Append batching: requests share appends, each gets its own positions, failures stay in their batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from api.batcher import AppendBatcher
from streams.log import LogUnavailable, Position
from streams.sqlite_log import SQLiteLog
from tests.api.fakes import SpyLog


@pytest.fixture
async def log(tmp_path: Path) -> SpyLog:
    return SpyLog(SQLiteLog(tmp_path / "log.db", shard_count=4))


async def test_concurrent_requests_share_appends(log: SpyLog) -> None:
    batcher = AppendBatcher(log, linger_s=0.01)
    requests = [[(f"user{i}", f"event {i}".encode())] for i in range(50)]
    answers = await asyncio.gather(*(batcher.append(r) for r in requests))
    assert log.calls < 5
    # Each request got the position of its own record.
    for request, [appended] in zip(requests, answers, strict=True):
        records = (await log.reader(appended.shard_id, Position.at(appended.sequence)).read(1)).records
        assert (records[0].partition_key, records[0].data) == request[0]
    await log.close()


async def test_a_request_keeps_its_entries_together_and_in_order(log: SpyLog) -> None:
    batcher = AppendBatcher(log, linger_s=0.01, max_records=10)
    big = [("same-key", f"{i}".encode()) for i in range(10)]
    small = [("other", b"x")]
    answers = await asyncio.gather(batcher.append(small), batcher.append(big), batcher.append(small))
    assert [len(a) for a in answers] == [1, 10, 1]
    # max_records 10: the big request could not share an append with anyone.
    assert log.calls == 3
    sequences = [int(a.sequence) for a in answers[1]]
    assert sequences == sorted(sequences)
    await log.close()


async def test_a_failing_append_fails_exactly_its_requests(log: SpyLog) -> None:
    batcher = AppendBatcher(log, linger_s=0.01)
    log.refusing = True
    first = [asyncio.ensure_future(batcher.append([(f"k{i}", b"a")])) for i in range(3)]
    results = await asyncio.gather(*first, return_exceptions=True)
    assert all(isinstance(r, LogUnavailable) for r in results)
    log.refusing = False
    later = await asyncio.gather(*(batcher.append([(f"k{i}", b"b")]) for i in range(3)))
    assert len(later) == 3
    assert [data for _, data in log.appended] == [b"b"] * 3
    await log.close()


async def test_entry_counts_outside_one_append_are_refused(log: SpyLog) -> None:
    batcher = AppendBatcher(log, max_records=10)
    with pytest.raises(ValueError, match="1 to 10"):
        await batcher.append([])
    with pytest.raises(ValueError, match="1 to 10"):
        await batcher.append([("k", b"x")] * 11)
    assert log.calls == 0
    await log.close()
