"""Append batching: concurrent requests share one log append, after a short linger (like the KPL).

Each request hands its entries (kept together, in order, in one append) and awaits its own
entries' (shard, sequence). One append is in flight at a time, and the next batch collects while
it is (group commit): the embedded log's appends are each one fsync and serialise on its
writer anyway, so the time of an fsync, not a timer, sets the batch size under load. Only a
request arriving when nothing is in flight waits, at most `linger_s`, for others to join it;
the moment an append returns, whatever collected during it is appended at once.
A failing append fails exactly the requests whose entries were in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prometheus_client import Counter, Histogram

from streams.log import Appended, Log

# Kinesis's PutRecords limit: one batch is one call on the AWS path.
MAX_BATCH_RECORDS = 500
# Short: it only ever delays the first request after an idle spell.
DEFAULT_LINGER_S = 0.001

APPENDS = Counter("fanline_log_appends_total", "Log append calls made by the API", ("outcome",))
EVENTS_APPENDED = Counter("fanline_events_appended_total", "Events the API appended to the log")
BATCH_SIZE = Histogram(
    "fanline_append_batch_records", "Records per log append", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500)
)

Entries = Sequence[tuple[str, bytes]]


class AppendBatcher:
    def __init__(self, log: Log, linger_s: float = DEFAULT_LINGER_S, max_records: int = MAX_BATCH_RECORDS):
        self._log = log
        self._linger_s = linger_s
        self._max_records = max_records
        self._pending: list[tuple[Entries, asyncio.Future[list[Appended]]]] = []
        self._pending_records = 0
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, entries: Entries) -> list[Appended]:
        """Append `entries` (partition key, data) in one log append; their shards and sequences."""
        if not 1 <= len(entries) <= self._max_records:
            raise ValueError(f"a request appends 1 to {self._max_records} entries, got {len(entries)}")
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        self._pending.append((entries, future))
        self._pending_records += len(entries)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all())
        # shield: a caller that goes away (client disconnect) must not cancel the others' append.
        return await asyncio.shield(future)

    async def _flush_all(self) -> None:
        if self._pending_records < self._max_records:
            await asyncio.sleep(self._linger_s)  # from idle: let concurrent requests join
        while self._pending:
            # No linger here: these requests collected while the last append was in flight.
            await self._flush(self._take())

    def _take(self) -> list[tuple[Entries, asyncio.Future[list[Appended]]]]:
        """The oldest requests whose entries fit in one append, whole."""
        taken, records = [], 0
        while self._pending and records + len(self._pending[0][0]) <= self._max_records:
            request = self._pending.pop(0)
            taken.append(request)
            records += len(request[0])
        self._pending_records -= records
        return taken

    async def _flush(self, batch: list[tuple[Entries, asyncio.Future[list[Appended]]]]) -> None:
        entries = [entry for request, _ in batch for entry in request]
        try:
            appended = await self._log.append(entries)
        except Exception as exc:
            APPENDS.labels("failed").inc()
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        APPENDS.labels("ok").inc()
        EVENTS_APPENDED.inc(len(entries))
        BATCH_SIZE.observe(len(entries))
        start = 0
        for request, future in batch:
            if not future.done():
                future.set_result(appended[start : start + len(request)])
            start += len(request)

    async def close(self) -> None:
        """Wait for the appends already asked for (shutdown: nothing accepted is dropped)."""
        if self._flusher is not None:
            await self._flusher
