"""`fanline deadletters list|retry`: look at the records the processors could not fold, and retry them.

The Runner dead-letters a record that does not decode, an event the fold rejects, and one whose fold
kept raising, and moves on (processors/runner.py). `list` shows each letter with its shard,
sequence, attempts, time, error and payload. `retry` hands each chosen letter to a Runner again, as
a batch of one on its own shard, through the same `Runner.handle` path as the processors: when it
folds, its effects are applied and the letter is deleted; when it fails again, the Runner
dead-letters it again (the letter stays, with the new error) and the command says so.

The shard's applied mark is already past a letter (the shard moved on), so the Runner would skip
it as a redelivery, and the store would refuse a batch below its mark as a late writer's: the
retry gives the Runner a view of the store without marks, and hands it the letter as the batch
at the shard's current mark. Applying it leaves the mark where it is; if the processors moved the
mark meanwhile the store may have refused it, so it is applied again (every effect is
idempotent) until the mark held still around it. A letter that fails again keeps its own key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Collection
from pathlib import Path
from typing import Any, cast

import click

from fanline.commands.options import command_settings
from fanline.settings import Settings
from fanline.wiring import active_fold_settings, open_store
from processors.metrics import Metrics
from processors.runner import Runner
from projections.records import DeadLetter
from projections.store import Store
from streams.delivery import Batch, Delivered, Undecodable
from streams.events import EventDecodeError, decode

PAYLOAD_PREVIEW = 300
RETRY_ROUNDS = 5


class _Unmarked:
    """The store as the retry's Runner sees it: no applied marks, and the letters it writes noted."""

    def __init__(self, store: Store, letter: DeadLetter) -> None:
        self._store = store
        self._letter = letter
        self.failed: list[DeadLetter] = []

    async def applied(self) -> dict[str, str]:
        return {}

    async def put_dead_letter(self, letter: DeadLetter) -> None:
        # Under the letter's own key (the Runner saw it at the shard's mark).
        letter = dataclasses.replace(letter, sequence=self._letter.sequence)
        self.failed.append(letter)
        await self._store.put_dead_letter(letter)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _item(letter: DeadLetter, sequence: str) -> Delivered | Undecodable:
    try:
        event = decode(letter.payload)
    except EventDecodeError as exc:
        return Undecodable(letter.shard_id, sequence, letter.payload, str(exc))
    return Delivered(letter.shard_id, sequence, event, letter.failed_at_ms)


async def retry_letter(store: Store, settings: Settings, letter: DeadLetter) -> str | None:
    """Fold `letter` again; None when it folded (and was deleted), else why not."""
    fold = await active_fold_settings(settings)  # the version's, as the processors fold it
    for _ in range(RETRY_ROUNDS):
        view = _Unmarked(store, letter)
        # cast: _Unmarked is a Store by delegation (__getattr__), which a Protocol check cannot see.
        runner = Runner(cast(Store, view), fold, Metrics())
        before = (await store.applied()).get(letter.shard_id)
        at = before if before is not None and int(before) > int(letter.sequence) else letter.sequence
        await runner.handle(Batch(letter.shard_id, [_item(letter, at)], 0))
        if view.failed:
            return view.failed[-1].error
        if (await store.applied()).get(letter.shard_id) == before:
            await store.delete_dead_letter(letter.shard_id, letter.sequence)
            return None
    return f"the shard's mark kept moving through {RETRY_ROUNDS} tries; retry later"


def _describe(letter: DeadLetter) -> str:
    when = datetime.datetime.fromtimestamp(letter.failed_at_ms / 1000, datetime.UTC)
    when_text = when.isoformat(timespec="seconds")
    payload = letter.payload.decode("utf-8", "backslashreplace")
    if len(payload) > PAYLOAD_PREVIEW:
        payload = payload[:PAYLOAD_PREVIEW] + f"... ({len(letter.payload)} bytes)"
    return (f"{letter.shard_id} {letter.sequence}  attempts={letter.attempts}  failed_at={when_text}\n"
            f"  error:   {letter.error}\n  payload: {payload}")


_DATA_DIR = click.option("--data-dir", type=click.Path(path_type=Path),
                         help="The SQLite data directory (default FANLINE_DATA_DIR or ./.fanline).")


@click.group()
def deadletters() -> None:
    """Records the processors could not fold: look at them, retry them."""


@deadletters.command("list")
@_DATA_DIR
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
def list_letters(data_dir: Path | None, limit: int) -> None:
    """Show the dead letters, by shard and sequence."""

    async def run() -> list[DeadLetter]:
        store = await open_store(command_settings(data_dir=data_dir))
        try:
            return await store.dead_letters(limit)
        finally:
            await store.close()

    letters = asyncio.run(run())
    for letter in letters:
        click.echo(_describe(letter))
    more = f" (the first {limit})" if len(letters) == limit else ""
    click.echo(f"{len(letters)} dead letter(s){more}")


@deadletters.command("retry")
@_DATA_DIR
@click.argument("letters", nargs=-1, metavar="SHARD:SEQUENCE...")
@click.option("--all", "every", is_flag=True, help="Retry every dead letter.")
def retry(data_dir: Path | None, letters: tuple[str, ...], every: bool) -> None:
    """Fold the chosen letters again; delete each one that folds. Exit 1 when any still fails."""
    if every == bool(letters):
        raise click.UsageError("name letters as SHARD:SEQUENCE, or give --all (not both)")
    wanted: set[tuple[str, str]] = set()
    for name in letters:
        shard, sep, sequence = name.rpartition(":")
        if not sep or not shard or not sequence:
            raise click.UsageError(f"{name!r}: expected SHARD:SEQUENCE (as `deadletters list` shows them)")
        wanted.add((shard, sequence))
    settings = command_settings(data_dir=data_dir)
    failed = asyncio.run(_retry(settings, None if every else wanted))
    if failed:
        raise SystemExit(1)


async def _retry(settings: Settings, wanted: Collection[tuple[str, str]] | None) -> int:
    store = await open_store(settings)
    try:
        letters = await store.dead_letters(1_000_000)
        chosen = [x for x in letters if wanted is None or (x.shard_id, x.sequence) in wanted]
        missing = set(wanted or ()) - {(x.shard_id, x.sequence) for x in chosen}
        for shard, sequence in sorted(missing):
            click.echo(f"{shard}:{sequence}: no such dead letter", err=True)
        failed = len(missing)
        for letter in chosen:
            error = await retry_letter(store, settings, letter)
            if error is None:
                click.echo(f"{letter.shard_id}:{letter.sequence}: folded, letter deleted")
            else:
                failed += 1
                click.echo(f"{letter.shard_id}:{letter.sequence}: still fails: {error}", err=True)
        click.echo(f"retried {len(chosen)}: {len(chosen) - failed + len(missing)} folded,"
                   f" {failed - len(missing)} still failing")
        return failed
    finally:
        await store.close()
