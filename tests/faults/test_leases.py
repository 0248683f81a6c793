"""Two, then three processor workers; one killed, the others go on: leases move within the lease
timeout, every shard keeps being processed, no shard is processed by two owners at once, and every
projection equals the reference model at the end.

Workers are `fanline process`'s projection runner (tests/faults/zygote.py), each recording the
batches it handled with their start and end times. Two owners at once would show as two workers'
batches of one shard overlapping in time; the only overlap the fencing allows is the batch in hand
when a lease moved (the old owner's last batch there: its checkpoint is refused by the counter).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from fanline.settings import Settings
from fanline.wiring import open_leases, open_log, open_store
from processors.runner import Runner
from projections.memory_store import MemoryStore
from projections.records import Mutation
from projections.sqlite_store import SQLiteStore
from projections.store import Store
from streams.delivery import Batch, Delivered
from streams.events import Event
from streams.leases import LeaseStore
from streams.log import Appended
from tests.faults.support import World, Zygote, fold_env, fold_settings, last_per_shard, wait_applied
from tests.faults.test_kill import feed
from tests.processors.builders import follow, register, unfollow

LEASE_TIMEOUT_S = 1.0
# w1 and w2 are slow (a wait between each batch's fold and apply), w3 quick: when w3 steals a lease
# from one of them mid-batch, w3 applies that batch and later ones before the old owner's apply
# lands. Without the store's fencing by the applied mark, the late apply undid w3's later batches
# (an unfollow lost: the reference model comparison failed about one run in three).
PAUSE_S = 0.3
SHARDS = 6  # 3 each for two workers, 2 each for three: the third must steal (KCL's rule)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> float:
    """Seconds it took until `check()` held; fails after `timeout_s`."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def owners(leases: LeaseStore) -> Callable[[], Awaitable[Counter[str | None]]]:
    async def count() -> Counter[str | None]:
        return Counter(lease.owner for lease in await leases.list())
    return count


def batches(files: list[Path]) -> list[tuple[str, str, int, int, float, float]]:
    rows: list[tuple[str, str, int, int, float, float]] = []
    for file in files:
        with sqlite3.connect(file) as db:
            found = db.execute("SELECT * FROM batches").fetchall()
        rows += [(w, s, int(a), int(b), t0, t1) for w, s, a, b, t0, t1 in found]
    return rows


def others_started(done: list[tuple[str, str, int, int, float, float]],
                   batch: tuple[str, str, int, int, float, float], lo: float, hi: float) -> bool:
    """Did the batch's worker start another batch of its shard between lo and hi?"""
    return any(x is not batch and x[:2] == batch[:2] and lo <= x[4] <= hi for x in done)


async def test_workers_added_and_killed_share_the_shards_and_never_process_one_at_once(
    tmp_path: Path,
) -> None:
    world = World(seed=5, namespaces=10, ops_each=40, prefix="lease")
    records = world.records()
    env = {**fold_env(), "FANLINE_BACKEND": "sqlite", "FANLINE_SHARDS": str(SHARDS)}
    settings = Settings.load({"data_dir": tmp_path}, environ=env)
    log = await open_log(settings)
    store = await open_store(settings)
    leases = await open_leases(settings)
    zygote = Zygote(tmp_path, env, LEASE_TIMEOUT_S)
    files = {w: tmp_path / f"{w}.batches" for w in ("w1", "w2", "w3")}
    appended: list[Appended] = []
    try:
        feeding = asyncio.create_task(feed(log, records, appended, 10, 0.15))
        pids = {w: zygote.spawn(w, files[w], PAUSE_S) for w in ("w1", "w2")}
        count = owners(leases)

        async def shared_by(workers: set[str]) -> bool:
            held = await count()
            return set(held) == workers and max(held.values()) <= -(-SHARDS // len(workers))

        await eventually(lambda: shared_by({"w1", "w2"}), 10, "w1 and w2 holding 3 shards each")
        pids["w3"] = zygote.spawn("w3", files["w3"], 0.0)
        await eventually(lambda: shared_by({"w1", "w2", "w3"}), 10, "w3 taking its share")
        dead = {lease.shard_id for lease in await leases.list() if lease.owner == "w1"}

        async def w1_working_on_its_shards() -> bool:  # a lease just taken may have no batch yet
            return dead <= {s for w, s, *_ in batches([files["w1"]])}

        await eventually(w1_working_on_its_shards, 10, "w1 handling a batch of each of its shards")
        await zygote.kill(pids.pop("w1"))
        assert not feeding.done(), "events must still flow while w1 dies"
        # Expiry is noticed a lease timeout after the counter stopped, taken at the next round (a
        # third of it later); the slack is for a busy machine.
        await eventually(lambda: shared_by({"w2", "w3"}), 2 * LEASE_TIMEOUT_S + 3, "w1's shards taken over")
        await feeding
        await wait_applied(store, last_per_shard(appended), timeout_s=40)
        for pid in pids.values():
            await zygote.stop(pid)
        assert await count() == Counter({None: SHARDS})  # a clean stop releases every lease

        done = batches(list(files.values()))
        by_worker_shard = Counter((w, s) for w, s, *_ in done)
        assert {s for w, s in by_worker_shard if w == "w1"} >= dead  # w1 was working on them ...
        taken_over = {s for w, s in by_worker_shard if w != "w1"}
        assert dead <= taken_over  # ... then the others
        for a in done:
            for b in done:
                if a[0] != b[0] and a[1] == b[1] and a[4] < b[4] < a[5]:
                    # Overlapping in time: one of them is the old owner's batch in hand when the lease
                    # moved (it learns at its checkpoint, which the counter refuses, and stops): that
                    # worker starts no other batch of the shard meanwhile. Two owners would both go on.
                    lo, hi = a[4], max(a[5], b[5])
                    assert not others_started(done, a, lo, hi) or not others_started(done, b, lo, hi), (
                        f"two owners of {a[1]} at once: {a} and {b}")
        await world.check(store)
    finally:
        zygote.close()
        await leases.close()
        await store.close()
        await log.close()


class _Held:
    """A store whose apply waits for `release`: a worker between its fold and its apply."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        self.waiting.set()
        await self.release.wait()
        await self.store.apply(mutations, shard_id, sequence)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _batch(first: int, *events: Event) -> Batch:
    return Batch("s0", [Delivered("s0", str(first + i), e, 0) for i, e in enumerate(events)], 0)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_a_late_apply_of_an_old_owner_does_not_undo_the_new_owners_later_batches(
    tmp_path: Path, kind: str
) -> None:
    store: Store = SQLiteStore(tmp_path / "store.db") if kind == "sqlite" else MemoryStore()
    try:
        new_owner = Runner(store, fold_settings())
        await new_owner.handle(_batch(1, register("a"), register("b")))
        held = _Held(store)
        old_owner = Runner(cast(Store, held), fold_settings())
        late = asyncio.create_task(old_owner.handle(_batch(3, follow("b", "a"))))
        await held.waiting.wait()  # folded, not yet applied: its lease moves now
        await new_owner.handle(_batch(3, follow("b", "a")))
        await new_owner.handle(_batch(4, unfollow("b", "a")))
        held.release.set()
        await late  # lands last: a later batch of the shard is in, so it must change nothing
        assert await store.follower_ids("a") == set()
        assert (await store.users(["a"]))["a"].followers == 0
        assert (await store.applied())["s0"] == "4"
    finally:
        await store.close()
