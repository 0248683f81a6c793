"""`fanline log tail` and `fanline log stats`: look at the event log of any backend.

Both open the log the settings name (fanline.wiring.open_log): the SQLite file under the data
directory by default, Kinesis with FANLINE_BACKEND=aws. They only read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from fanline import wiring
from fanline.commands.options import command_settings
from fanline.settings import Settings
from streams.events import EventDecodeError, decode, encode
from streams.log import Log, Position, Record, ShardReader

IDLE_WAIT_S = 1.0
READ_LIMIT = 1000

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where the SQLite files live [default: FANLINE_DATA_DIR or ./.fanline]",
)


def _settings(data_dir: Path | None) -> Settings:
    settings = command_settings(data_dir=data_dir)
    # Reading must not create: a mistyped --data-dir would otherwise leave an empty log behind.
    if settings.backend == "sqlite" and not (settings.data_dir / "log.db").exists():
        raise click.UsageError(f"no event log in {settings.data_dir} (is --data-dir right?)")
    return settings


def describe(record: Record) -> str:
    """One line per record: shard, sequence, the event as JSON, or why it is not an event."""
    try:
        text = encode(decode(record.data)).decode()
    except EventDecodeError as exc:
        text = f"<undecodable: {exc}> {record.data[:200]!r}"
    return f"{record.shard_id} {record.sequence} {text}"


async def tail_log(log: Log, start: Position, echo: Callable[[str], None]) -> None:
    """Print records as they arrive on every shard, until cancelled (Ctrl-C)."""
    readers: dict[str, ShardReader] = {}
    finished: set[str] = set()
    look_for_shards = True
    while True:
        if look_for_shards:
            # At first, and when a shard ended (a Kinesis reshard): its children are all news.
            for shard in await log.shards():
                if shard.shard_id not in readers and shard.shard_id not in finished:
                    readers[shard.shard_id] = log.reader(shard.shard_id, start)
            start, look_for_shards = Position.trim_horizon(), False
        got = 0
        for shard_id, reader in list(readers.items()):
            result = await reader.read(READ_LIMIT)
            for record in result.records:
                echo(describe(record))
            got += len(result.records)
            if result.end_of_shard:
                finished.add(shard_id)
                del readers[shard_id]
                look_for_shards = True
        if not got:
            await log.wait_for_records(IDLE_WAIT_S)


@dataclass(frozen=True)
class ShardStats:
    shard_id: str
    parent_ids: tuple[str, ...]
    closed: bool
    records: int
    last_sequence: str | None


async def log_stats(log: Log) -> list[ShardStats]:
    """Read every shard to its end, counting."""
    stats = []
    for shard in await log.shards():
        reader = log.reader(shard.shard_id, Position.trim_horizon())
        count, last = 0, None
        while True:
            result = await reader.read(10_000)
            count += len(result.records)
            last = result.records[-1] if result.records else last
            if result.end_of_shard or (not result.records and result.millis_behind == 0):
                break
        stats.append(
            ShardStats(
                shard.shard_id,
                shard.parent_ids,
                shard.closed,
                count,
                last.sequence if last else None,
            )
        )
    return stats


@click.command()
@data_dir_option
@click.option(
    "--from",
    "start",
    type=click.Choice(["trim_horizon", "latest"]),
    default="latest",
    show_default=True,
    help="from the oldest record, or only new ones",
)
def tail(data_dir: Path | None, start: str) -> None:
    """Print events as they arrive: shard, sequence, event JSON. Ctrl-C stops."""
    settings = _settings(data_dir)
    position = Position.trim_horizon() if start == "trim_horizon" else Position.latest()

    async def run() -> None:
        log = await wiring.open_log(settings)
        try:
            await tail_log(log, position, lambda line: click.echo(line))
        finally:
            await log.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@click.command()
@data_dir_option
def stats(data_dir: Path | None) -> None:
    """Shards, their record counts and last sequence numbers."""
    settings = _settings(data_dir)

    async def run() -> list[ShardStats]:
        log = await wiring.open_log(settings)
        try:
            return await log_stats(log)
        finally:
            await log.close()

    shards = asyncio.run(run())
    for s in shards:
        state = "closed" if s.closed else "open"
        parents = f" parents={','.join(s.parent_ids)}" if s.parent_ids else ""
        last = s.last_sequence or "-"
        click.echo(f"{s.shard_id} {state}{parents} records={s.records} last_sequence={last}")
    click.echo(f"total records={sum(s.records for s in shards)} shards={len(shards)}")
