"""Poison records: undecodable bytes, an unknown event type, and a valid event whose fold raises.

Through the real processors (Consumer, leases, Runner) on the SQLite log and store of a data
directory: each poison record ends up in the dead-letter store with its shard, sequence, error and
payload after bounded retries, the shard moves on (everything after it is folded, the projections
equal the reference model of the good events), and `fanline deadletters list|retry` shows them and
folds the one that can be folded now; the others stay, with their error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner, Result

from fanline.cli import main
from fanline.settings import Settings
from fanline.wiring import open_leases, open_log, open_store
from processors.fold import fold_event
from processors.runner import Runner
from processors.settings import FoldSettings
from processors.state import BatchState
from projections.records import Mutation
from streams.consumer import Consumer
from streams.events import Event, PostCreated, PostDeleted, encode, partition_key
from streams.log import Appended
from tests.faults.support import World, fold_env, fold_settings, last_per_shard, wait_applied
from tests.processors.reference_model import ReferenceModel
from tests.processors.test_properties import assert_matches_reference


async def invoke(cli: CliRunner, args: list[str], env: dict[str, str]) -> Result:
    """The command in a thread: it runs its own event loop (asyncio.run)."""
    return await asyncio.to_thread(cli.invoke, main, args, env=env)


UNKNOWN_TYPE = b'{"type": "PostLiked", "id": "e1", "ts": 1, "data": {"post_id": "p1"}}'
GARBAGE = b"\xff\x00 not json at all"


def _poison_post(world: World) -> PostCreated:
    """A post of the first namespace that is never deleted: folding it late changes nothing else."""
    ns = world.namespaces[0]
    events = world.histories[ns]
    deleted = {e.data.post_id for e in events if isinstance(e, PostDeleted)}
    return next(e for e in events if isinstance(e, PostCreated) and e.data.post_id not in deleted)


async def test_poison_records_are_dead_lettered_and_deadletters_retry_folds_what_it_can(
    tmp_path: Path,
) -> None:
    world = World(seed=7, namespaces=3, ops_each=40, prefix="poison")
    poison = _poison_post(world)
    calls = {"poison": 0}

    def fold(state: BatchState, event: Event, settings: FoldSettings) -> list[Mutation]:
        if event is not None and event.id == poison.id:
            calls["poison"] += 1
            raise RuntimeError("this fold has a bug")
        return fold_event(state, event, settings)

    settings = Settings.load({"data_dir": tmp_path / "data"}, environ=fold_env())
    log = await open_log(settings)
    store = await open_store(settings)
    leases = await open_leases(settings)
    try:
        records = world.records()
        # The poison in the middle of the stream, on the keys of events that follow them.
        middle = len(records) // 2
        records[middle:middle] = [("poison-key", GARBAGE), (partition_key(poison), UNKNOWN_TYPE)]
        appended: list[Appended] = await log.append(records)
        by_payload = {data: a for (_, data), a in zip(records, appended, strict=True)}

        runner = Runner(store, fold_settings(), fold_attempts=3, fold=fold)
        consumer = Consumer(log, leases, runner.handle, worker_id="poison-w", idle_wait_s=0.05,
                            lease_timeout_s=3.0)
        task = asyncio.create_task(consumer.run())
        await wait_applied(store, last_per_shard(appended), timeout_s=30)
        consumer.stop()
        await asyncio.wait_for(task, 10)

        letters = {letter.payload: letter for letter in await store.dead_letters(100)}
        assert set(letters) == {GARBAGE, UNKNOWN_TYPE, encode(poison)}
        for payload, letter in letters.items():
            where = by_payload[payload]
            assert (letter.shard_id, letter.sequence) == (where.shard_id, where.sequence)
        assert letters[encode(poison)].attempts == 3 == calls["poison"]  # bounded retries
        assert "RuntimeError: this fold has a bug" in letters[encode(poison)].error
        assert "PostLiked" in letters[UNKNOWN_TYPE].error
        assert letters[GARBAGE].error

        # The shards moved on: everything but the poison post is there, exactly once.
        without = ReferenceModel(world.models[world.namespaces[0]].celebrity_threshold)
        for event in world.histories[world.namespaces[0]]:
            if event.id != poison.id:
                without.apply(event)
        await assert_matches_reference(store, "hybrid", world.namespaces[0], without, 4)
        for ns in world.namespaces[1:]:
            await assert_matches_reference(store, "hybrid", ns, world.models[ns], 4)
    finally:
        await leases.close()
        await store.close()
        await log.close()

    # A person looks, then retries: the post folds now (the fold bug is gone), the rest cannot.
    cli = CliRunner()
    env = {**fold_env(), "FANLINE_DATA_DIR": str(tmp_path / "data")}
    listed = await invoke(cli, ["deadletters", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "3 dead letter(s)" in listed.output
    post_letter = letters[encode(poison)]
    assert f"{post_letter.shard_id} {post_letter.sequence}" in listed.output
    assert "this fold has a bug" in listed.output and "PostLiked" in listed.output

    bad = await invoke(cli, ["deadletters", "retry", "nonsense"], env=env)
    assert bad.exit_code == 2 and "SHARD:SEQUENCE" in bad.output
    retried = await invoke(cli, ["deadletters", "retry", "--all"], env=env)
    assert retried.exit_code == 1, retried.output  # two still fail
    assert "1 folded, 2 still failing" in retried.output

    store = await open_store(settings)
    try:
        left = {letter.payload for letter in await store.dead_letters(100)}
        assert left == {GARBAGE, UNKNOWN_TYPE}
        await world.check(store)  # now the whole history, poison post included
        marks = await store.applied()
        assert all(int(marks[s]) >= seq for s, seq in last_per_shard(appended).items())  # never moved back
    finally:
        await store.close()
    name = f"{post_letter.shard_id}:{post_letter.sequence}"
    again = await invoke(cli, ["deadletters", "retry", name], env=env)
    assert again.exit_code == 1 and "no such dead letter" in again.output
