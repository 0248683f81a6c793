"""The Lambda path: a Kinesis event source mapping's event in, partial batch failures out.

Lambda hands the function the documented Kinesis event:

    {"Records": [{"eventID": "shardId-000000000003:4959...", "eventSource": "aws:kinesis",
                  "kinesis": {"data": "<base64>", "partitionKey": "u1", "sequenceNumber": "4959...",
                              "approximateArrivalTimestamp": 1700000000.123, ...}, ...}]}

The records are grouped into one `streams.delivery.Batch` per shard (the shard id is the part of
`eventID` before the colon) and handed, shard by shard, to the same handler the ECS processors
use (`Runner.handle`). A record whose data is not base64 or not an event arrives as
`Undecodable`, so the runner dead-letters it and the shard moves on, as does a fold that keeps
failing. When the handler raises (the store refused), the shard's batch is not durable: its
records are answered as failures, from its first record on, so Lambda (ReportBatchItemFailures)
retries the shard from there. Other shards of the same event are unaffected.

A switch of projection version (`fanline replay`) does not move the event source mapping: it
keeps one position per shard for every version. Records the function applied to the old version
after the replay's last position are then missing from the new one, since the mapping does not
deliver them again. `GapFillingHandler` closes that gap: before the first batch of a shard it
applies to a version, it folds, from the stream, the records between that version's applied
mark for the shard and the batch (read after the mark). Later batches of the shard in the same
container follow on from the ones before (the mapping runs one invocation per shard at a time,
and every invocation looks at the pointer first), so they need no look. Records the version
already has are skipped by the runner, so a look that finds nothing missing costs one read.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from processors.runner import Runner
from streams.consumer import to_batch
from streams.delivery import Batch, Delivered, Handler, Undecodable
from streams.events import EventDecodeError, decode
from streams.log import Log, Position, ReadResult, sequence_key

log = logging.getLogger(__name__)


class KinesisData(msgspec.Struct, frozen=True):
    data: str
    partitionKey: str
    sequenceNumber: str
    approximateArrivalTimestamp: float


class KinesisRecord(msgspec.Struct, frozen=True):
    eventID: str
    kinesis: KinesisData

    @property
    def shard_id(self) -> str:
        return self.eventID.split(":", 1)[0]


class KinesisEvent(msgspec.Struct, frozen=True):
    Records: list[KinesisRecord]


class NotAKinesisEvent(ValueError):
    """The event is not the shape a Kinesis event source mapping sends."""


def parse_event(event: Mapping[str, Any]) -> KinesisEvent:
    try:
        parsed = msgspec.convert(event, KinesisEvent)
    except msgspec.ValidationError as exc:
        raise NotAKinesisEvent(f"not a Kinesis event: {exc}") from exc
    for record in parsed.Records:
        if ":" not in record.eventID or not record.kinesis.sequenceNumber.isdecimal():
            raise NotAKinesisEvent(
                f"not a Kinesis record: eventID {record.eventID!r} (want shardId-...:sequence), "
                f"sequenceNumber {record.kinesis.sequenceNumber!r}"
            )
    return parsed


def _item(record: KinesisRecord) -> Delivered | Undecodable:
    shard, sequence, data = record.shard_id, record.kinesis.sequenceNumber, record.kinesis.data
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        return Undecodable(shard, sequence, data.encode(), f"data is not base64: {exc}")
    try:
        event = decode(raw)
    except EventDecodeError as exc:
        return Undecodable(shard, sequence, raw, str(exc))
    return Delivered(shard, sequence, event, int(record.kinesis.approximateArrivalTimestamp * 1000))


def batches(event: KinesisEvent, now_ms: int) -> list[Batch]:
    """One batch per shard, in sequence order, in the order the shards first appear."""
    by_shard: dict[str, list[KinesisRecord]] = {}
    for record in event.Records:
        by_shard.setdefault(record.shard_id, []).append(record)
    found = []
    for shard, records in by_shard.items():
        records.sort(key=lambda r: int(r.kinesis.sequenceNumber))
        newest_ms = int(records[-1].kinesis.approximateArrivalTimestamp * 1000)
        found.append(Batch(shard, [_item(r) for r in records], millis_behind=max(0, now_ms - newest_ms)))
    return found


async def handle_event(
    event: Mapping[str, Any],
    handler: Handler,
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> dict[str, list[dict[str, str]]]:
    """Run `handler` on each shard's batch; answer the records of the shards that failed."""
    failures: list[dict[str, str]] = []
    for batch in batches(parse_event(event), clock_ms()):
        try:
            await handler(batch)
        except Exception:  # the batch is not durable: Lambda retries the shard from its first record
            log.exception("shard %s: batch of %d records from %s failed", batch.shard_id,
                          len(batch.items), batch.items[0].sequence)
            failures.extend({"itemIdentifier": item.sequence} for item in batch.items)
    return {"batchItemFailures": failures}


GAP_READ_LIMIT = 1000


class GapFillingHandler:
    """`Runner.handle` for one projection version, first folding from `log` what the version
    lacks before a shard's first batch here (see the module docstring). One per version."""

    def __init__(self, runner: Runner, log: Log, *, read_limit: int = GAP_READ_LIMIT) -> None:
        self.runner = runner
        self._log = log
        self._read_limit = read_limit
        self._continued: set[str] = set()  # shards whose batches here follow on from the last one
        self.gap_records = 0  # folded from the stream, for the logs and the tests

    async def __call__(self, batch: Batch) -> None:
        if batch.items and batch.shard_id not in self._continued:
            await self._fill_gap(batch.shard_id, batch.items[0].sequence)
        await self.runner.handle(batch)
        self._continued.add(batch.shard_id)

    async def _fill_gap(self, shard_id: str, first_sequence: str) -> None:
        self.runner.forget(shard_id)  # the mark as the store has it now, not a cached one
        mark = (await self.runner.store.applied()).get(shard_id)
        reader = self._log.reader(shard_id, Position.after(mark) if mark else Position.trim_horizon())
        before = sequence_key(first_sequence)
        folded = 0
        while True:
            result = await reader.read(self._read_limit)
            gap = [r for r in result.records if sequence_key(r.sequence) < before]
            if gap:
                await self.runner.handle(to_batch(shard_id, ReadResult(gap, False, result.millis_behind)))
                folded += len(gap)
            reached = len(gap) < len(result.records) or result.end_of_shard
            if reached or (not result.records and result.millis_behind == 0):
                break
        if folded:
            log.info("shard %s: folded %d records the version lacked (after %s, before %s)",
                     shard_id, folded, mark, first_sequence)
        self.gap_records += folded
