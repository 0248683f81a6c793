"""Test doubles for the API tests: a Log wrapper that counts appends and can refuse them."""

from __future__ import annotations

from collections.abc import Sequence

from streams.events import Event, decode
from streams.log import Appended, Log, LogUnavailable, Position, Shard, ShardReader


class SpyLog:
    """Wraps a real log; records every appended record, counts append calls, refuses on demand."""

    def __init__(self, inner: Log) -> None:
        self.inner = inner
        self.calls = 0
        self.appended: list[tuple[str, bytes]] = []
        self.refusing = False

    async def append(self, entries: Sequence[tuple[str, bytes]]) -> list[Appended]:
        self.calls += 1
        if self.refusing:
            raise LogUnavailable("refusing on purpose (test)")
        answer = await self.inner.append(entries)
        self.appended.extend(entries)
        return answer

    def events(self) -> list[Event]:
        return [decode(data) for _, data in self.appended]

    async def shards(self) -> list[Shard]:
        return await self.inner.shards()

    def reader(self, shard_id: str, position: Position) -> ShardReader:
        return self.inner.reader(shard_id, position)

    async def wait_for_records(self, timeout_s: float) -> None:
        await self.inner.wait_for_records(timeout_s)

    async def close(self) -> None:
        await self.inner.close()
