"""The archiver: a shard consumer's Handler that copies every record of a batch into the Archive.

    archiver = Archiver(archive)
    consumer = Consumer(log, archive_leases, archiver.handle, worker_id="archiver-...")

It runs on a lease table of its own, so it checkpoints independently of the projection runner.
The consumer hands over decoded events; each is stored as its canonical encoding (the bytes the
API appended: both come from `streams.events.encode`), an undecodable record as its raw bytes.
A batch delivered again is harmless: the archive ignores records at or below its mark.
"""

from __future__ import annotations

from streams.archive import Archive
from streams.delivery import Batch, Delivered
from streams.events import encode, partition_key
from streams.log import Record


def to_records(batch: Batch) -> list[Record]:
    records = []
    arrival_ms = 0
    for item in batch.items:
        if isinstance(item, Delivered):
            arrival_ms = item.arrival_ms
            event = item.event
            records.append(Record(item.shard_id, item.sequence, partition_key(event), encode(event),
                                  arrival_ms))
        else:
            # Its key and arrival time are not handed over; the previous record's time keeps the order.
            records.append(Record(item.shard_id, item.sequence, "", item.data, arrival_ms))
    return records


class Archiver:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    async def handle(self, batch: Batch) -> None:
        if batch.items:
            await self.archive.write(batch.shard_id, to_records(batch))
