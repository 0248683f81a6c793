"""What the shard consumer hands its handler: a batch of decoded events from one shard, in order.

A record that does not decode is not dropped and does not stop the shard: it arrives as an
`Undecodable` item with its shard, sequence number, raw bytes and the decoder's message, so the
handler can dead-letter it. When the handler returns, the batch is durable and the consumer
checkpoints its last sequence number; when it raises, nothing is checkpointed and the batch is
delivered again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from streams.events import Event


# msgspec Structs, not dataclasses: a replay makes one per event (created in C: a tenth of the
# time of a dataclass's __init__ in Python).
class Delivered(msgspec.Struct, frozen=True, gc=False):
    shard_id: str
    sequence: str
    event: Event
    arrival_ms: int


class Undecodable(msgspec.Struct, frozen=True, gc=False):
    shard_id: str
    sequence: str
    data: bytes
    error: str


@dataclass(frozen=True, slots=True)
class Batch:
    shard_id: str
    items: list[Delivered | Undecodable]
    millis_behind: int

    @property
    def last_sequence(self) -> str:
        return self.items[-1].sequence


Handler = Callable[[Batch], Awaitable[None]]
