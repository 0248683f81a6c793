"""SQLiteLog: the Log contract, durability, a reader in another process, bad input."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streams.log import Log, LogUnavailable, Position, Record, Shard, hash_key, sequence_key
from streams.sqlite_log import SQLiteLog
from tests.streams.log_contract import LogContract

ROOT = Path(__file__).resolve().parents[2]


class TestSQLiteLog(LogContract):
    @pytest.fixture
    async def log(self, tmp_path: Path) -> AsyncIterator[Log]:
        log = SQLiteLog(tmp_path / "log.sqlite", shard_count=4)
        yield log
        await log.close()


async def read_all(log: SQLiteLog) -> list[Record]:
    records: list[Record] = []
    for shard in await log.shards():
        records.extend((await log.reader(shard.shard_id, Position.trim_horizon()).read(10_000)).records)
    return records


async def peer(command: str, path: Path, count: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.streams.sqlite_log_peer",
        command,
        str(path),
        str(count),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )


async def test_records_survive_close_and_reopen_and_the_shard_count_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = SQLiteLog(path, shard_count=3)
    first = await log.append([(f"k{i}", f"{i}".encode()) for i in range(30)])
    before = sorted((r.shard_id, r.sequence, r.data) for r in await read_all(log))
    await log.close()

    reopened = SQLiteLog(path, shard_count=8)
    try:
        assert reopened.shard_count == 3
        assert len(await reopened.shards()) == 3
        assert sorted((r.shard_id, r.sequence, r.data) for r in await read_all(reopened)) == before
        [later] = await reopened.append([("k0", b"later")])
        assert later.shard_id == first[0].shard_id
        assert sequence_key(later.sequence) > max(sequence_key(a.sequence) for a in first)
    finally:
        await reopened.close()


async def test_acknowledged_appends_survive_a_process_that_dies_without_closing(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    await SQLiteLog(path).close()
    process = await peer("append", path, 50)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    assert out.decode().strip() == "appended"
    log = SQLiteLog(path)
    try:
        assert sorted(r.data for r in await read_all(log)) == sorted(f"peer-{i}".encode() for i in range(50))
    finally:
        await log.close()


async def test_another_process_reads_while_this_one_appends(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = SQLiteLog(path)
    try:
        process = await peer("read", path, 60)
        sent: set[tuple[str, str, str]] = set()
        for batch in range(6):
            await asyncio.sleep(0.05)
            entries = [(f"user-{i}", f"{batch}-{i}") for i in range(10)]
            appended = await log.append([(key, data.encode()) for key, data in entries])
            sent |= {(a.shard_id, a.sequence, data) for a, (_, data) in zip(appended, entries, strict=True)}
        out, _ = await asyncio.wait_for(process.communicate(), timeout=20)
        assert process.returncode == 0
        assert {tuple(json.loads(line)) for line in out.decode().splitlines()} == sent
    finally:
        await log.close()


async def test_a_wait_is_woken_by_an_append_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = SQLiteLog(path)
    try:
        assert await read_all(log) == []
        process = await peer("append", path, 1)
        start = time.monotonic()
        await log.wait_for_records(timeout_s=15.0)
        assert time.monotonic() - start < 10.0  # the peer's start-up dominates; the timeout did not
        await asyncio.wait_for(process.communicate(), timeout=20)
        assert [r.data for r in await read_all(log)] == [b"peer-0"]
    finally:
        await log.close()


@pytest.mark.parametrize(
    ("bad_entry", "error"),
    [
        (("", b"data"), ValueError),
        (("k" * 257, b"data"), ValueError),
        ((7, b"data"), ValueError),
        (("alice", "not bytes"), TypeError),
        (("alice", bytearray(b"not bytes")), TypeError),
        (("alice",), TypeError),
    ],
)
async def test_a_bad_entry_is_refused_and_changes_nothing(
    tmp_path: Path, bad_entry: tuple[object, ...], error: type[Exception]
) -> None:
    log = SQLiteLog(tmp_path / "log.sqlite")
    try:
        await log.append([("alice", b"before")])
        with pytest.raises(error, match="entry 1"):
            await log.append([("bob", b"good"), bad_entry])  # type: ignore[list-item]
        assert [r.data for r in await read_all(log)] == [b"before"]
    finally:
        await log.close()


async def test_bad_reader_arguments_are_refused(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.sqlite")
    try:
        with pytest.raises(ValueError, match="no shard"):
            log.reader("shardId-000000000009", Position.trim_horizon())
        with pytest.raises(ValueError, match="decimal"):
            log.reader("shardId-000000000000", Position.at("12abc"))
        kinesis_sequence = "49590338271490256608559692538361571095921575989136588898"
        with pytest.raises(ValueError, match="not a sequence number of an SQLite log"):
            log.reader("shardId-000000000000", Position.after(kinesis_sequence))
        with pytest.raises(ValueError, match="limit"):
            await log.reader("shardId-000000000000", Position.trim_horizon()).read(0)
    finally:
        await log.close()


async def test_a_reader_of_a_quiet_shard_moves_past_other_shards_records(tmp_path: Path) -> None:
    # Every shard lives in one table: a reader skips the others' rows and must not skip its own.
    log = SQLiteLog(tmp_path / "log.sqlite")
    try:
        shards = await log.shards()
        keys = [f"user-{i}" for i in range(100)]
        quiet = next(k for k in keys if shard_of(shards, k) == shards[0].shard_id)
        busy = [k for k in keys if shard_of(shards, k) != shards[0].shard_id]
        reader = log.reader(shards[0].shard_id, Position.trim_horizon())
        for round_ in range(3):
            await log.append([(key, f"{round_}".encode()) for key in busy])
            assert (await reader.read(limit=1)).records == []
            [appended] = await log.append([(quiet, f"quiet-{round_}".encode())])
            await log.append([(key, b"after") for key in busy])
            result = await reader.read(limit=1)
            assert [(r.sequence, r.data) for r in result.records] == [
                (appended.sequence, f"quiet-{round_}".encode())
            ]
            assert result.millis_behind == 0
    finally:
        await log.close()


def shard_of(shards: list[Shard], key: str) -> str:
    h = hash_key(key)
    return next(s.shard_id for s in shards if s.starting_hash_key <= h <= s.ending_hash_key)


async def test_closing_the_log_ends_a_wait(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.sqlite")
    waiting = asyncio.create_task(log.wait_for_records(timeout_s=10.0))
    await asyncio.sleep(0.05)
    start = time.monotonic()
    await log.close()
    await asyncio.wait_for(waiting, timeout=2.0)
    assert time.monotonic() - start < 1.0
    with pytest.raises(RuntimeError, match="closed"):
        await log.append([("alice", b"too late")])


def test_a_file_that_is_not_a_log_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    path.write_bytes(b"not a database, just some bytes " * 100)
    with pytest.raises(LogUnavailable, match="cannot open the log"):
        SQLiteLog(path)
    assert path.read_bytes() == b"not a database, just some bytes " * 100
    with pytest.raises(LogUnavailable, match="cannot open the log"):
        SQLiteLog(tmp_path / "no" / "such" / "dir" / "log.sqlite")


async def test_two_writers_on_one_file_keep_sequences_growing_and_answers_true(tmp_path: Path) -> None:
    # Two logs on one file stand for two processes: each one's guess at the next sequence goes
    # stale when the other appends, and the writer must renumber (and the answers follow).
    first, second = SQLiteLog(tmp_path / "log.sqlite"), SQLiteLog(tmp_path / "log.sqlite")
    try:
        answers = []
        for n in range(6):
            writer = first if n % 2 == 0 else second
            answers += await writer.append([("alice", f"{n}-a".encode()), ("alice", f"{n}-b".encode())])
        records = await read_all(first)
        assert [(r.sequence, r.data) for r in records] == [
            (a.sequence, f"{n // 2}-{'ab'[n % 2]}".encode()) for n, a in enumerate(answers)
        ]
        assert [sequence_key(a.sequence) for a in answers] == sorted(
            {sequence_key(a.sequence) for a in answers}
        )
    finally:
        await first.close()
        await second.close()
