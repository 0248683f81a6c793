"""The Log port on Kinesis Data Streams (aiobotocore), also run against kinesalite.

Appends go through PutRecords, reads through GetShardIterator/GetRecords. Throttling and
internal failures are retried here, once, with exponential backoff and jitter (tenacity);
botocore's own retries are switched off so the bound is ours and easy to reason about.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack, suppress
from datetime import UTC, datetime
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from streams.log import Appended, LogUnavailable, Position, ReadResult, Record, Shard

# Kinesis's limits (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html).
MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data plus partition key
MAX_KEY_CHARS = 256
MAX_GET_RECORDS_LIMIT = 10_000
# GetRecords allows 5 calls per second per shard; we space calls by this much.
GET_RECORDS_INTERVAL_S = 0.2
# Longest `wait_for_records` sleep: appends by other processes are noticed at most this late.
MAX_IDLE_WAIT_S = 0.5

# Error codes after which trying again can succeed; anything else is final.
RETRYABLE_CODES = frozenset({
    "ProvisionedThroughputExceededException",
    "InternalFailure",
    "InternalFailureException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "KMSThrottlingException",
    "LimitExceededException",
    "ThrottlingException",
})

_ITERATOR_TYPES = {
    "trim_horizon": "TRIM_HORIZON",
    "latest": "LATEST",
    "at_sequence": "AT_SEQUENCE_NUMBER",
    "after_sequence": "AFTER_SEQUENCE_NUMBER",
    "at_timestamp": "AT_TIMESTAMP",
}


class _Retry(Exception):
    """A call (or part of it) failed in a way that may pass on the next attempt."""


class _ExpiredIterator(Exception):
    """GetRecords was given an iterator older than 5 minutes: the reader makes a new one."""


def _error_code(exc: ClientError) -> str:
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code


def _as_retry_or_unavailable(exc: Exception, what: str) -> Exception:
    """Sort an SDK error: worth another attempt, an expired iterator, or final."""
    if isinstance(exc, ClientError):
        code = _error_code(exc)
        if code == "ExpiredIteratorException":
            return _ExpiredIterator(str(exc))
        if code in RETRYABLE_CODES:
            return _Retry(f"{what}: {exc}")
    elif isinstance(exc, BotoConnectionError | HTTPClientError):  # network trouble passes
        return _Retry(f"{what}: {exc}")
    # Access denied, missing stream, bad parameters, no credentials: retrying will not help.
    return LogUnavailable(f"{what}: {exc}")


def _validate(entries: Sequence[tuple[str, bytes]]) -> list[int]:
    """Check every entry before anything is sent (bad input changes nothing); answer each one's size."""
    sizes = []
    for index, (key, data) in enumerate(entries):
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
            raise ValueError(f"entry {index}: partition key must be a string of 1 to {MAX_KEY_CHARS} chars")
        if not isinstance(data, bytes):
            raise ValueError(f"entry {index}: data must be bytes, not {type(data).__name__}")
        size = len(data) + len(key.encode("utf-8"))
        if size > MAX_RECORD_BYTES:
            raise ValueError(f"entry {index}: {size} bytes exceeds Kinesis's 1 MiB per record")
        sizes.append(size)
    return sizes


class KinesisLog:
    """`streams.log.Log` on one Kinesis stream. Build it with `await KinesisLog.connect(...)`."""

    def __init__(
        self,
        client: Any,
        stream_name: str,
        *,
        exit_stack: AsyncExitStack | None = None,
        max_attempts: int = 8,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
    ) -> None:
        # `client` is an aiobotocore Kinesis client (or a test wrapper around one).
        self.client = client
        self.stream_name = stream_name
        self._exit_stack = exit_stack
        self._max_attempts = max_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        # Earliest monotonic time of the next GetRecords call, per shard (shared by its readers).
        self._next_get_records: dict[str, float] = {}
        self._appended = asyncio.Event()

    @classmethod
    async def connect(
        cls,
        stream_name: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        max_attempts: int = 8,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
    ) -> KinesisLog:
        """Open a client; `endpoint_url` None means real AWS (credentials from the default chain)."""
        stack = AsyncExitStack()
        config = AioConfig(
            # One retry layer only: ours (see module docstring).
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=32,
        )
        creating = get_session().create_client(
            "kinesis", region_name=region, endpoint_url=endpoint_url, config=config
        )
        client = await stack.enter_async_context(creating)
        return cls(
            client,
            stream_name,
            exit_stack=stack,
            max_attempts=max_attempts,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
        )

    async def close(self) -> None:
        if self._exit_stack is not None:
            await self._exit_stack.aclose()
            self._exit_stack = None

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            # "Full jitter" (AWS's advice): a uniform wait up to an exponentially growing cap.
            wait=wait_random_exponential(multiplier=self._backoff_initial_s, max=self._backoff_max_s),
            retry=retry_if_exception_type(_Retry),
            reraise=True,
        )

    async def _call(self, what: str, method: str, **kwargs: Any) -> dict[str, Any]:
        """One API call with bounded retries of transient failures; LogUnavailable when they run out."""
        try:
            async for attempt in self._retrying():
                with attempt:
                    try:
                        answer: dict[str, Any] = await getattr(self.client, method)(**kwargs)
                        return answer
                    except (ClientError, BotoCoreError) as exc:
                        raise _as_retry_or_unavailable(exc, what) from exc
        except _Retry as exc:
            raise LogUnavailable(f"{exc} (gave up after {self._max_attempts} attempts)") from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    # ---- the stream itself

    async def ensure_stream(self, shard_count: int, timeout_s: float = 300.0) -> None:
        """Create the stream if it is missing, then wait until it is ACTIVE (AWS takes ~30 s)."""
        try:
            await self.client.create_stream(StreamName=self.stream_name, ShardCount=shard_count)
        except ClientError as exc:
            if _error_code(exc) != "ResourceInUseException":  # it exists already: fine
                raise LogUnavailable(f"CreateStream {self.stream_name}: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        while True:
            summary = await self._call(
                "DescribeStreamSummary", "describe_stream_summary", StreamName=self.stream_name
            )
            status = summary["StreamDescriptionSummary"]["StreamStatus"]
            if status == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise LogUnavailable(f"stream {self.stream_name} still {status} after {timeout_s} s")
            await asyncio.sleep(0.25)

    async def shards(self) -> list[Shard]:
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            page = await self._call("ListShards", "list_shards", **kwargs)
            for item in page["Shards"]:
                parents = tuple(
                    item[name] for name in ("ParentShardId", "AdjacentParentShardId") if item.get(name)
                )
                shards.append(
                    Shard(
                        shard_id=item["ShardId"],
                        parent_ids=parents,
                        starting_hash_key=int(item["HashKeyRange"]["StartingHashKey"]),
                        ending_hash_key=int(item["HashKeyRange"]["EndingHashKey"]),
                        ending_sequence=item["SequenceNumberRange"].get("EndingSequenceNumber"),
                    )
                )
            token = page.get("NextToken")
            if not token:
                return shards
            # ListShards refuses StreamName together with NextToken.
            kwargs = {"NextToken": token}

    # ---- appending

    async def append(self, entries: Sequence[tuple[str, bytes]]) -> list[Appended]:
        """PutRecords in calls of at most 500 records / 5 MiB, each key at most once per call.

        Why once per key per call: PutRecords may fail some entries and accept the others. If
        a call held K1 and K2 and only K1 failed, K2 would be written before K1's retry and
        K's order would be broken for good. So a record is sent only once every earlier record
        of its key is written; a call holds many keys, but the head of each at most. Failed
        entries are the heads of their keys, so retrying just them keeps order. A batch with
        repeated keys costs a few extra (small) calls; see fanline/benchmarks/kinesis.py.
        If we give up (LogUnavailable), what was written is a prefix of each key's records.
        """
        sizes = _validate(entries)
        results: list[Appended | None] = [None] * len(entries)
        pending = list(range(len(entries)))
        while pending:
            call: list[int] = []
            rest: list[int] = []
            seen: set[str] = set()
            call_bytes = 0
            for index in pending:
                key = entries[index][0]
                full = len(call) == MAX_RECORDS_PER_CALL or call_bytes + sizes[index] > MAX_BYTES_PER_CALL
                if key in seen or full:
                    rest.append(index)
                else:
                    call.append(index)
                    call_bytes += sizes[index]
                # Later records of this key wait for the next call whether this one went or not.
                seen.add(key)
            await self._put_all(entries, call, results)
            pending = rest
        self._appended.set()
        self._appended = asyncio.Event()
        return [appended for appended in results if appended is not None]

    async def _put_all(
        self, entries: Sequence[tuple[str, bytes]], call: list[int], results: list[Appended | None]
    ) -> None:
        """Send one call's entries (distinct keys); resend only the failed ones, with backoff."""
        remaining = call
        try:
            async for attempt in self._retrying():
                with attempt:
                    remaining = await self._put_once(entries, remaining, results)
                    if remaining:
                        raise _Retry(f"PutRecords: {len(remaining)} entries failed")
        except _Retry as exc:
            raise LogUnavailable(f"{exc} (gave up after {self._max_attempts} attempts)") from exc

    async def _put_once(
        self, entries: Sequence[tuple[str, bytes]], call: list[int], results: list[Appended | None]
    ) -> list[int]:
        """One PutRecords; answer the indexes that failed with a retryable code."""
        records = [{"Data": entries[i][1], "PartitionKey": entries[i][0]} for i in call]
        try:
            answer = await self.client.put_records(StreamName=self.stream_name, Records=records)
        except (ClientError, BotoCoreError) as exc:
            # The whole call failed. (After a lost answer the entries may be written twice;
            # consumers deduplicate by event id. Order per key still holds.)
            raise _as_retry_or_unavailable(exc, "PutRecords") from exc
        failed: list[int] = []
        for index, item in zip(call, answer["Records"], strict=True):
            code = item.get("ErrorCode")
            if code is None:
                results[index] = Appended(item["ShardId"], item["SequenceNumber"])
            elif code in RETRYABLE_CODES:
                failed.append(index)
            else:
                raise LogUnavailable(f"PutRecords refused entry {index}: {code} {item.get('ErrorMessage')}")
        return failed

    # ---- reading

    def reader(self, shard_id: str, position: Position) -> KinesisShardReader:
        return KinesisShardReader(self, shard_id, position)

    async def wait_for_records(self, timeout_s: float) -> None:
        """Return when this process appends, or after a short bounded sleep (at most 0.5 s).

        Kinesis cannot tell us that another process appended, so this is a plain bounded sleep
        for those records; GetRecords is limited to 5 calls/s per shard anyway, so half a
        second of idle wait costs little latency and saves the read budget.
        """
        with suppress(TimeoutError):
            await asyncio.wait_for(self._appended.wait(), min(timeout_s, MAX_IDLE_WAIT_S))

    async def _get_records_slot(self, shard_id: str) -> None:
        """Sleep until this shard may be read again (5 GetRecords per second per shard)."""
        now = time.monotonic()
        slot = max(now, self._next_get_records.get(shard_id, now))
        # Reserve the slot before sleeping so concurrent readers of one shard queue up.
        self._next_get_records[shard_id] = slot + GET_RECORDS_INTERVAL_S
        if slot > now:
            await asyncio.sleep(slot - now)


class KinesisShardReader:
    """A cursor over one shard: GetShardIterator once, then GetRecords following NextShardIterator."""

    def __init__(self, log: KinesisLog, shard_id: str, position: Position) -> None:
        self._log = log
        self._shard_id = shard_id
        self._position = position
        self._iterator: str | None = None
        self._last_sequence: str | None = None
        self._end_of_shard = False

    async def _new_iterator(self) -> str:
        # After a read, continue after the last record; an expired iterator is re-made from it.
        position = self._position if self._last_sequence is None else Position.after(self._last_sequence)
        kwargs: dict[str, Any] = {
            "StreamName": self._log.stream_name,
            "ShardId": self._shard_id,
            "ShardIteratorType": _ITERATOR_TYPES[position.kind],
        }
        if position.sequence is not None:
            kwargs["StartingSequenceNumber"] = position.sequence
        if position.timestamp_ms is not None:
            kwargs["Timestamp"] = datetime.fromtimestamp(position.timestamp_ms / 1000, tz=UTC)
        answer = await self._log._call("GetShardIterator", "get_shard_iterator", **kwargs)
        iterator: str = answer["ShardIterator"]
        return iterator

    async def read(self, limit: int = 1000) -> ReadResult:
        if self._end_of_shard:
            return ReadResult([], end_of_shard=True, millis_behind=0)
        if self._iterator is None:
            self._iterator = await self._new_iterator()
        await self._log._get_records_slot(self._shard_id)
        limit = max(1, min(limit, MAX_GET_RECORDS_LIMIT))
        try:
            answer = await self._log._call(
                "GetRecords", "get_records", ShardIterator=self._iterator, Limit=limit
            )
        except _ExpiredIterator:
            # Iterators live 5 minutes; re-create it from the last record read and try once more.
            self._iterator = await self._new_iterator()
            await self._log._get_records_slot(self._shard_id)
            answer = await self._log._call(
                "GetRecords", "get_records", ShardIterator=self._iterator, Limit=limit
            )
        records = [
            Record(
                shard_id=self._shard_id,
                sequence=item["SequenceNumber"],
                partition_key=item["PartitionKey"],
                data=item["Data"],
                arrival_ms=int(item["ApproximateArrivalTimestamp"].timestamp() * 1000),
            )
            for item in answer["Records"]
        ]
        if records:
            self._last_sequence = records[-1].sequence
        self._iterator = answer.get("NextShardIterator")
        # A null NextShardIterator means the shard is closed and read to its end.
        self._end_of_shard = self._iterator is None
        behind = int(answer.get("MillisBehindLatest", 0))
        return ReadResult(records, end_of_shard=self._end_of_shard, millis_behind=behind)
