"""Append batching: requests share appends, each gets its own positions, failures stay in their batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from api.batcher import AppendBatcher
from streams.log import Appended, LogUnavailable, Position
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



class GatedLog(SpyLog):
    """Appends wait for `gate`: the test decides when the append in flight finishes."""

    def __init__(self, inner: SQLiteLog) -> None:
        super().__init__(inner)
        self.gate = asyncio.Event()

    async def append(self, entries: Sequence[tuple[str, bytes]]) -> list[Appended]:
        self.calls += 1
        await self.gate.wait()
        return await self.inner.append(entries)


async def test_requests_arriving_during_an_append_go_in_the_next_one_without_linger(tmp_path: Path) -> None:
    log = GatedLog(SQLiteLog(tmp_path / "log.db", shard_count=4))
    batcher = AppendBatcher(log, linger_s=0.2)  # only the first append, from idle, waits for it
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = asyncio.ensure_future(batcher.append([("k0", b"first")]))
    while log.calls == 0:  # the first append is in flight, held at the gate
        await asyncio.sleep(0.001)
    rest = [asyncio.ensure_future(batcher.append([(f"k{i}", b"next")])) for i in range(1, 20)]
    await asyncio.sleep(0)  # the nineteen are queued behind the append in flight
    log.gate.set()
    await first
    assert len(await asyncio.gather(*rest)) == 19
    elapsed = loop.time() - started
    assert log.calls == 2  # the nineteen shared the append after the first
    assert elapsed < 0.2 + 0.15, elapsed  # one linger (from idle), not a second one
    await log.close()
