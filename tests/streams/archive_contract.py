"""The contract every Archive adapter passes: subclass `ArchiveContract` with an `archive` fixture."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streams.archive import Archive
from streams.log import Record

HOUR_MS = 3_600_000
T0 = 1_767_225_600_000


def record(shard: str, seq: int, ms: int = T0, data: bytes | None = None) -> Record:
    payload = data if data is not None else b'{"n":%d}' % seq
    return Record(shard, str(seq), f"user-{seq}", payload, ms)


async def everything(archive: Archive, shard: str) -> list[Record]:
    return [r async for chunk in archive.read(shard) for r in chunk]


class ArchiveContract:
    """Not collected itself (no Test prefix); one subclass per adapter gives `archive` and `reopen`."""

    async def test_empty(self, archive: Archive) -> None:
        assert await archive.marks() == {}
        assert await everything(archive, "s0") == []

    async def test_records_come_back_in_order_with_the_mark(self, archive: Archive) -> None:
        first = [record("s0", n) for n in range(1, 4)]
        later = [record("s0", n, T0 + 2 * HOUR_MS) for n in range(10, 12)]
        await archive.write("s0", first)
        await archive.write("s0", later)
        await archive.write("s1", [record("s1", 5)])
        assert await everything(archive, "s0") == first + later
        assert await archive.marks() == {"s0": "11", "s1": "5"}

    async def test_bytes_kept_exactly_even_when_not_json(self, archive: Archive) -> None:
        odd = [record("s0", 1, data=b"\xff\x00 not json"), record("s0", 2, data=b'{"a":\n1}'),
               record("s0", 3, data=b'{"type":"PostCreated", "x": "\\u00e9"}')]
        await archive.write("s0", odd)
        assert await everything(archive, "s0") == odd

    async def test_a_batch_delivered_again_is_stored_once(self, archive: Archive) -> None:
        batch = [record("s0", n) for n in range(1, 6)]
        await archive.write("s0", batch[:3])
        await archive.write("s0", batch)  # redelivered with more
        await archive.write("s0", batch[:2])  # all old
        assert await everything(archive, "s0") == batch

    async def test_an_earlier_clock_stays_in_order(self, archive: Archive) -> None:
        batch = [record("s0", 1, T0 + HOUR_MS), record("s0", 2, T0)]
        await archive.write("s0", batch[:1])
        await archive.write("s0", batch[1:])
        assert await everything(archive, "s0") == batch

    async def test_a_fresh_reader_sees_what_was_written(
        self, archive: Archive, reopen: Callable[[], Archive]
    ) -> None:
        await archive.write("s0", [record("s0", 7)])
        other = reopen()
        try:
            assert await other.marks() == {"s0": "7"}
            assert [r.sequence for r in await everything(other, "s0")] == ["7"]
            await other.write("s0", [record("s0", 7), record("s0", 8)])
            assert [r.sequence for r in await everything(other, "s0")] == ["7", "8"]
        finally:
            await other.close()

    async def test_bad_shard_id_refused(self, archive: Archive) -> None:
        with pytest.raises(ValueError, match="shard id"):
            await archive.write("../x", [record("../x", 1)])
