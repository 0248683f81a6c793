"""The LeaseStore port: the KCL's lease table.

One lease per shard: who owns it, a counter the owner bumps on every renewal (other workers
take a lease whose counter has not moved for the lease timeout), the checkpoint, and the
parents (a child shard is read only after every parent's checkpoint is SHARD_END).

Every change is conditional on the counter (and owner) the caller last saw: that is the
fencing that keeps two workers from processing one shard past a takeover. A condition that
fails answers None and changes nothing.

Adapters: `streams.sqlite_leases.SQLiteLeaseStore`, `streams.dynamodb_leases.DynamoDBLeaseStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from streams.log import Shard

TRIM_HORIZON = "TRIM_HORIZON"
SHARD_END = "SHARD_END"


@dataclass(frozen=True, slots=True)
class Lease:
    shard_id: str
    owner: str | None
    counter: int
    # TRIM_HORIZON, a sequence number (the last one processed), or SHARD_END.
    checkpoint: str
    parent_ids: tuple[str, ...] = ()


class LeaseStore(Protocol):
    async def ensure(self, shards: Sequence[Shard]) -> None:
        """Create a lease (unowned, TRIM_HORIZON) for each shard that has none; keep existing ones."""
        ...

    async def list(self) -> list[Lease]: ...

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        """Become the owner, if the lease is still as `lease` says (counter unchanged)."""
        ...

    async def renew(self, lease: Lease) -> Lease | None:
        """Bump the counter, if `lease.owner` still owns it at `lease.counter`."""
        ...

    async def checkpoint(self, lease: Lease, checkpoint: str) -> Lease | None:
        """Record progress, if `lease.owner` still owns it at `lease.counter`."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the lease up (owner None), if still held as `lease` says."""
        ...

    async def close(self) -> None: ...
