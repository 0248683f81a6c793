"""The LeaseStore contract: every adapter passes these tests.

`LeaseContract` is not collected itself. Each adapter subclasses it once with two async fixtures:
`leases`, a fresh empty store, and `other`, a second store on the same table or file (another
worker's view), both closed afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from streams.leases import SHARD_END, TRIM_HORIZON, Lease, LeaseStore
from streams.log import HASH_KEY_MAX, Shard

HALF = HASH_KEY_MAX // 2
PARENT = Shard("shard-0", (), 0, HASH_KEY_MAX, ending_sequence="90")
CHILDREN = [Shard("shard-1", ("shard-0",), 0, HALF), Shard("shard-2", ("shard-0",), HALF + 1, HASH_KEY_MAX)]
SHARDS = [PARENT, *CHILDREN]


async def lease_of(store: LeaseStore, shard_id: str) -> Lease:
    [lease] = [lease for lease in await store.list() if lease.shard_id == shard_id]
    return lease


async def taken(store: LeaseStore, owner: str = "w1") -> Lease:
    """shard-0's lease, held by `owner`."""
    await store.ensure(SHARDS)
    lease = await store.take(await lease_of(store, "shard-0"), owner)
    assert lease is not None
    return lease


class LeaseContract:
    # --- ensure and list ------------------------------------------------------------------
    async def test_a_fresh_store_lists_nothing(self, leases: LeaseStore) -> None:
        assert await leases.list() == []

    async def test_ensure_creates_unowned_leases_at_trim_horizon_with_parents(
        self, leases: LeaseStore
    ) -> None:
        await leases.ensure(SHARDS)
        assert await leases.list() == [
            Lease("shard-0", None, 0, TRIM_HORIZON, ()),
            Lease("shard-1", None, 0, TRIM_HORIZON, ("shard-0",)),
            Lease("shard-2", None, 0, TRIM_HORIZON, ("shard-0",)),
        ]

    async def test_ensure_is_idempotent_and_keeps_owners_and_checkpoints(
        self, leases: LeaseStore, other: LeaseStore
    ) -> None:
        lease = await taken(leases)
        done = await leases.checkpoint(lease, "42")
        before = await leases.list()
        await other.ensure(SHARDS)
        await leases.ensure(SHARDS[:1])
        assert await leases.list() == before
        assert await lease_of(leases, "shard-0") == done

    async def test_ensure_adds_only_the_new_shards(self, leases: LeaseStore) -> None:
        await leases.ensure([PARENT])
        lease = await leases.take(await lease_of(leases, "shard-0"), "w1")
        await leases.ensure(SHARDS)
        assert [lease.shard_id for lease in await leases.list()] == ["shard-0", "shard-1", "shard-2"]
        assert await lease_of(leases, "shard-0") == lease

    # --- take -------------------------------------------------------------------------------
    async def test_take_at_the_seen_counter_sets_the_owner_and_bumps_the_counter(
        self, leases: LeaseStore, other: LeaseStore
    ) -> None:
        await leases.ensure(SHARDS)
        seen = await lease_of(leases, "shard-1")
        got = await leases.take(seen, "w1")
        assert got == dataclasses.replace(seen, owner="w1", counter=seen.counter + 1)
        assert await lease_of(other, "shard-1") == got

    async def test_take_at_a_stale_counter_fails_and_changes_nothing(self, leases: LeaseStore) -> None:
        lease = await taken(leases, "w1")
        stale = dataclasses.replace(lease, owner=None, counter=0)
        assert await leases.take(stale, "w2") is None
        assert await leases.take(dataclasses.replace(lease, counter=lease.counter + 5), "w2") is None
        assert await lease_of(leases, "shard-0") == lease

    async def test_a_lease_owned_by_another_worker_can_be_taken_at_its_counter(
        self, leases: LeaseStore, other: LeaseStore
    ) -> None:
        # This is how a dead worker's lease is taken over and how balancing steals one.
        mine = await taken(leases, "w1")
        stolen = await other.take(await lease_of(other, "shard-0"), "w2")
        assert stolen is not None and stolen.owner == "w2"
        # The old owner's next renewal tells it the lease is gone.
        assert await leases.renew(mine) is None
        assert await lease_of(leases, "shard-0") == stolen

    async def test_concurrent_takers_of_one_lease_exactly_one_wins(
        self, leases: LeaseStore, other: LeaseStore
    ) -> None:
        await leases.ensure(SHARDS)
        for shard in SHARDS:
            seen = await lease_of(leases, shard.shard_id)
            results = await asyncio.gather(
                *(store.take(seen, f"w{i}-{j}") for j in range(3) for i, store in enumerate([leases, other]))
            )
            winners = [r for r in results if r is not None]
            assert len(winners) == 1, results
            assert await lease_of(other, shard.shard_id) == winners[0]

    # --- renew ------------------------------------------------------------------------------
    async def test_renew_by_the_owner_bumps_the_counter_only(self, leases: LeaseStore) -> None:
        lease = await taken(leases)
        renewed = await leases.renew(lease)
        assert renewed == dataclasses.replace(lease, counter=lease.counter + 1)
        assert await lease_of(leases, "shard-0") == renewed

    async def test_renew_at_a_stale_counter_or_by_another_owner_fails_and_changes_nothing(
        self, leases: LeaseStore
    ) -> None:
        lease = await taken(leases)
        renewed = await leases.renew(lease)
        assert renewed is not None
        assert await leases.renew(lease) is None  # the counter moved on
        assert await leases.renew(dataclasses.replace(renewed, owner="w2")) is None
        assert await lease_of(leases, "shard-0") == renewed

    async def test_changes_to_an_unknown_shard_fail(self, leases: LeaseStore) -> None:
        ghost = Lease("nope", "w1", 0, TRIM_HORIZON)
        assert await leases.renew(ghost) is None
        assert await leases.checkpoint(ghost, "1") is None
        assert await leases.take(dataclasses.replace(ghost, owner=None), "w1") is None
        await leases.release(ghost)
        assert await leases.list() == []

    # --- checkpoint -------------------------------------------------------------------------
    async def test_checkpoint_records_progress_and_bumps_the_counter(
        self, leases: LeaseStore, other: LeaseStore
    ) -> None:
        lease = await taken(leases)
        first = await leases.checkpoint(lease, "17")
        assert first == dataclasses.replace(lease, checkpoint="17", counter=lease.counter + 1)
        last = await leases.checkpoint(first, SHARD_END)
        assert last is not None and last.checkpoint == SHARD_END
        assert await lease_of(other, "shard-0") == last

    async def test_checkpoint_at_a_stale_counter_or_by_another_owner_fails_and_changes_nothing(
        self, leases: LeaseStore, other: LeaseStore
    ) -> None:
        lease = await taken(leases)
        stolen = await other.take(lease, "w2")
        assert stolen is not None
        assert await leases.checkpoint(lease, "99") is None  # stale counter: the lease was stolen
        assert await leases.checkpoint(dataclasses.replace(stolen, owner="w1"), "99") is None
        assert await lease_of(leases, "shard-0") == stolen

    async def test_bad_checkpoints_and_owners_are_refused_and_change_nothing(
        self, leases: LeaseStore
    ) -> None:
        lease = await taken(leases)
        for bad in ["", "abc", "-1", "1.5", TRIM_HORIZON]:
            with pytest.raises(ValueError, match="checkpoint"):
                await leases.checkpoint(lease, bad)
        with pytest.raises(ValueError, match="owner"):
            await leases.take(lease, "")
        with pytest.raises(ValueError, match="owner"):
            await leases.renew(dataclasses.replace(lease, owner=None))
        assert await lease_of(leases, "shard-0") == lease

    async def test_close_twice_is_harmless(self, leases: LeaseStore) -> None:
        await leases.close()
        await leases.close()

    # --- release ----------------------------------------------------------------------------
    async def test_release_clears_the_owner_and_keeps_the_checkpoint(self, leases: LeaseStore) -> None:
        lease = await leases.checkpoint(await taken(leases), "5")
        assert lease is not None
        await leases.release(lease)
        released = await lease_of(leases, "shard-0")
        assert released.owner is None and released.checkpoint == "5"
        assert released.counter > lease.counter  # watchers see the change
        # Released leases are free for anyone at their counter.
        assert await leases.take(released, "w2") is not None

    async def test_release_at_a_stale_counter_or_by_another_owner_changes_nothing(
        self, leases: LeaseStore, other: LeaseStore
    ) -> None:
        lease = await taken(leases)
        renewed = await leases.renew(lease)
        assert renewed is not None
        await leases.release(lease)
        assert await lease_of(leases, "shard-0") == renewed
        await other.release(dataclasses.replace(renewed, owner="w2"))
        assert await lease_of(leases, "shard-0") == renewed
