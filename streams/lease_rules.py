"""Input checks shared by the lease stores: bad input raises ValueError before anything changes."""

from __future__ import annotations

from streams.leases import SHARD_END, Lease


def check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner:
        raise ValueError(f"a lease owner must be a non-empty string, not {owner!r}")


def check_held(lease: Lease) -> str:
    """The owner a conditional change is made for; a lease nobody holds cannot be changed."""
    if lease.owner is None:
        raise ValueError(f"lease {lease.shard_id} has no owner: take it first")
    check_owner(lease.owner)
    return lease.owner


def check_checkpoint(checkpoint: str) -> None:
    # A checkpoint names the last record processed (a decimal sequence number) or the shard's end.
    if checkpoint != SHARD_END and not (isinstance(checkpoint, str) and checkpoint.isdigit()):
        raise ValueError(f"a checkpoint is a sequence number or {SHARD_END}, not {checkpoint!r}")
