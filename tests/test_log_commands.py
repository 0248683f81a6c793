"""`fanline log stats` and `fanline log tail` on an SQLite log."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from fanline.cli import main
from fanline.commands.log import log_stats, tail_log
from fanline.emulators import Emulator
from streams.events import PostCreated, PostCreatedData, encode, partition_key
from streams.kinesis_log import KinesisLog
from streams.log import Log, Position
from streams.sqlite_log import SQLiteLog

ROOT = Path(__file__).resolve().parents[1]
SQLITE_ENV = {"FANLINE_BACKEND": "sqlite", "FANLINE_DATA_DIR": None, "FANLINE_SHARDS": None}


def post(n: int, author: str = "alice") -> tuple[str, bytes]:
    event = PostCreated(
        id=f"e{n}",
        ts=1_700_000_000_000 + n,
        data=PostCreatedData(post_id=f"p{n}", author_id=author, body="hi"),
    )
    return partition_key(event), encode(event)


async def make_log(directory: Path, entries: list[tuple[str, bytes]]) -> None:
    log = SQLiteLog(directory / "log.db")
    try:
        await log.append(entries)
    finally:
        await log.close()


def test_stats_counts_every_shard(tmp_path: Path) -> None:
    asyncio.run(make_log(tmp_path, [post(n, author=f"user-{n}") for n in range(40)]))
    result = CliRunner().invoke(main, ["log", "stats", "--data-dir", str(tmp_path)], env=SQLITE_ENV)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 5
    assert all(line.startswith("shardId-00000000000") and " open " in line for line in lines[:4])
    assert sum(int(line.split("records=")[1].split()[0]) for line in lines[:4]) == 40
    assert lines[-1] == "total records=40 shards=4"


def test_stats_of_a_missing_log_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(main, ["log", "stats", "--data-dir", str(missing)], env=SQLITE_ENV)
    assert result.exit_code == 2
    assert "no event log in" in result.output
    assert not missing.exists()


async def test_tail_prints_old_and_new_events_and_undecodable_records_until_ctrl_c(tmp_path: Path) -> None:
    await make_log(tmp_path, [post(1), ("alice", b"\xffnot an event")])
    env = {**os.environ, "FANLINE_BACKEND": "sqlite"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from fanline.cli import main; main()",
        "log", "tail", "--from", "trim_horizon", "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        lines = [await asyncio.wait_for(process.stdout.readline(), timeout=20) for _ in range(2)]
        await make_log(tmp_path, [post(2)])
        lines.append(await asyncio.wait_for(process.stdout.readline(), timeout=10))
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=10)
    text = [line.decode().rstrip("\n") for line in lines]
    shard = text[0].split()[0]
    assert text[0].startswith(f"{shard} ") and text[0].endswith(post(1)[1].decode())
    assert text[1].startswith(f"{shard} ") and "<undecodable: " in text[1] and "not an event" in text[1]
    assert text[2].endswith(post(2)[1].decode())
    sequences = [int(line.split()[1]) for line in text]
    assert sequences == sorted(sequences)
    assert process.returncode == 0, stderr.decode()


@pytest.mark.parametrize("option", [["--from", "yesterday"], ["--data-dir", "/dev/null"]])
def test_tail_refuses_bad_options(option: list[str]) -> None:
    result = CliRunner().invoke(main, ["log", "tail", *option], env=SQLITE_ENV)
    assert result.exit_code == 2


# --- the same two functions on both backends -------------------------------------------------
@pytest.fixture(params=["sqlite", "kinesis"])
async def any_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Log]:
    log: Log
    if request.param == "sqlite":
        log = SQLiteLog(tmp_path / "log.db")
    else:
        kinesalite: Emulator = request.getfixturevalue("kinesalite")
        kinesis = await KinesisLog.connect(
            f"test-{uuid.uuid4().hex[:12]}", endpoint_url=kinesalite.endpoint_url
        )
        await kinesis.ensure_stream(4)
        log = kinesis
    yield log
    await log.close()


async def test_log_stats_counts_records_and_last_sequences(any_log: Log) -> None:
    appended = await any_log.append([post(n, author=f"user-{n}") for n in range(30)])
    stats = {s.shard_id: s for s in await log_stats(any_log)}
    assert len(stats) == 4 and sum(s.records for s in stats.values()) == 30
    for shard_id, s in stats.items():
        mine = [a for a in appended if a.shard_id == shard_id]
        assert s.records == len(mine)
        assert s.last_sequence == (mine[-1].sequence if mine else None)


async def test_tail_log_prints_what_arrives_until_cancelled(any_log: Log) -> None:
    await any_log.append([post(0)])  # before the tail starts from LATEST: not printed
    lines: list[str] = []
    tail = asyncio.create_task(tail_log(any_log, Position.latest(), lines.append))
    await asyncio.sleep(0.3)
    await any_log.append([post(1), ("alice", b"{}")])
    for _ in range(100):
        if len(lines) >= 2:
            break
        await asyncio.sleep(0.05)
    tail.cancel()
    with pytest.raises(asyncio.CancelledError):
        await tail
    assert len(lines) == 2
    assert lines[0].endswith(post(1)[1].decode())
    assert "<undecodable: " in lines[1] and lines[1].endswith("b'{}'")
