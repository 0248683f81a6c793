"""The Log port: an ordered, sharded, durable stream of records (Kinesis's model).

Adapters: `streams.sqlite_log.SQLiteLog` (embedded default) and `streams.kinesis_log.KinesisLog`.
Both pass `tests/streams/log_contract.py`.

A record's data is one encoded event (`streams.events.encode`). Records with the same
partition key land on the same shard, in append order. Sequence numbers are decimal strings,
strictly increasing within a shard; compare them with `sequence_key`, never as strings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec

HASH_KEY_MAX = 2**128 - 1


def hash_key(partition_key: str) -> int:
    """Kinesis's rule: the MD5 of the partition key, read as a 128-bit unsigned integer."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


def sequence_key(sequence: str) -> int:
    return int(sequence)


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    parent_ids: tuple[str, ...]
    starting_hash_key: int
    ending_hash_key: int
    # The last sequence number of a closed shard (after a split or merge); None while open.
    ending_sequence: str | None = None

    @property
    def closed(self) -> bool:
        return self.ending_sequence is not None


class Appended(msgspec.Struct, frozen=True, gc=False):
    """Where an appended record landed. A msgspec Struct rather than a dataclass: an append of
    500 records builds 500 of these, and a Struct is built in C at a fifth of the cost."""

    shard_id: str
    sequence: str


# A msgspec Struct: a replay reads millions (created in C, a tenth of a dataclass's __init__).
class Record(msgspec.Struct, frozen=True, gc=False):
    shard_id: str
    sequence: str
    partition_key: str
    data: bytes
    arrival_ms: int


PositionKind = Literal["trim_horizon", "latest", "at_sequence", "after_sequence", "at_timestamp"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where to start reading a shard: Kinesis's shard iterator types."""

    kind: PositionKind
    sequence: str | None = None
    timestamp_ms: int | None = None

    @classmethod
    def trim_horizon(cls) -> Position:
        return cls("trim_horizon")

    @classmethod
    def latest(cls) -> Position:
        return cls("latest")

    @classmethod
    def at(cls, sequence: str) -> Position:
        return cls("at_sequence", sequence=sequence)

    @classmethod
    def after(cls, sequence: str) -> Position:
        return cls("after_sequence", sequence=sequence)

    @classmethod
    def at_timestamp(cls, timestamp_ms: int) -> Position:
        return cls("at_timestamp", timestamp_ms=timestamp_ms)


@dataclass(frozen=True, slots=True)
class ReadResult:
    records: list[Record]
    # True once a closed shard has been read to its end: its children may be read now.
    end_of_shard: bool
    millis_behind: int


class LogUnavailable(Exception):
    """The log refused an append or a read after the adapter's own retries."""


class ShardReader(Protocol):
    """A cursor over one shard. Each `read` continues where the previous one stopped."""

    async def read(self, limit: int = 1000) -> ReadResult: ...


class Log(Protocol):
    async def append(self, entries: Sequence[tuple[str, bytes]]) -> list[Appended]:
        """Append (partition_key, data) pairs durably; answer each one's shard and sequence, in order.

        Records of one key keep their order. Raises `LogUnavailable` when the log refuses after
        retries; then no record of the batch is half-written out of order.
        """
        ...

    async def shards(self) -> list[Shard]:
        """Every shard, open and closed, with its parents."""
        ...

    def reader(self, shard_id: str, position: Position) -> ShardReader: ...

    async def wait_for_records(self, timeout_s: float) -> None:
        """Return soon after new records may have arrived, or after `timeout_s` (no busy-polling)."""
        ...

    async def close(self) -> None: ...
