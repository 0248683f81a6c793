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
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from streams.delivery import Batch, Delivered, Handler, Undecodable
from streams.events import EventDecodeError, decode

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
