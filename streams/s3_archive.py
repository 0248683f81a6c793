"""S3Archive: the Archive port on S3 (aiobotocore), tested against moto's S3 server.

S3 objects cannot be appended to, so each `write` puts one gzip NDJSON object per shard and
hour, named by the first sequence it holds (zero-padded, so names sort as sequence numbers):

    <prefix><shard_id>/<YYYY-MM-DDTHH>/<first sequence>.ndjson.gz
    <prefix><shard_id>/mark.json       {"sequence": <the last sequence held>, "hour": ...}

The mark is put after the object. A writer that dies in between leaves an object past the
mark; the batch comes again from the consumer and starts at the same record, so it is put
under the same name. `read` yields each sequence once, in order, and stops at the mark.
On AWS the infra's Firehose delivery stream can take this writer's place (same layout idea).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from streams.archive import chunks, decode_lines, encode_lines, hour_of
from streams.log import Record, sequence_key

SEQUENCE_WIDTH = 130  # Kinesis sequence numbers have at most 129 digits
MARK = "mark.json"


class S3Archive:
    """Build it with `await S3Archive.connect(bucket, ...)`; `ensure_bucket()` on an emulator."""

    def __init__(self, client: Any, bucket: str, prefix: str = "archive/",
                 exit_stack: AsyncExitStack | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self._exit_stack = exit_stack
        self._marks: dict[str, dict[str, str]] = {}

    @classmethod
    async def connect(cls, bucket: str, *, prefix: str = "archive/", endpoint_url: str | None = None,
                      region: str = "us-east-1") -> S3Archive:
        stack = AsyncExitStack()
        config = AioConfig(retries={"mode": "standard", "max_attempts": 8})
        creating = get_session().create_client("s3", region_name=region, endpoint_url=endpoint_url,
                                                config=config)
        client = await stack.enter_async_context(creating)
        return cls(client, bucket, prefix, stack)

    async def ensure_bucket(self) -> None:
        try:
            await self.client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou",
                                                                   "BucketAlreadyExists"):
                raise

    def _shard(self, shard_id: str) -> str:
        if not shard_id or "/" in shard_id:
            raise ValueError(f"not a shard id: {shard_id!r}")
        return f"{self.prefix}{shard_id}/"

    async def _mark(self, shard_id: str) -> dict[str, str] | None:
        if shard_id in self._marks:
            return self._marks[shard_id]
        try:
            answer = await self.client.get_object(Bucket=self.bucket, Key=self._shard(shard_id) + MARK)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        async with answer["Body"] as body:
            mark: dict[str, str] = json.loads(await body.read())
        self._marks[shard_id] = mark
        return mark

    async def write(self, shard_id: str, records: Sequence[Record]) -> None:
        mark = await self._mark(shard_id)
        if mark is not None:
            last = sequence_key(mark["sequence"])
            records = [r for r in records if sequence_key(r.sequence) > last]
        if not records:
            return
        hour = mark["hour"] if mark else ""
        groups: dict[str, list[Record]] = {}
        for record in records:
            hour = max(hour_of(record.arrival_ms), hour)  # never back to an earlier hour
            groups.setdefault(hour, []).append(record)
        for group_hour, group in groups.items():
            key = f"{self._shard(shard_id)}{group_hour}/{group[0].sequence.zfill(SEQUENCE_WIDTH)}.ndjson.gz"
            await self.client.put_object(Bucket=self.bucket, Key=key,
                                         Body=gzip.compress(encode_lines(group), compresslevel=6))
        new_mark = {"sequence": records[-1].sequence, "hour": hour}
        await self.client.put_object(Bucket=self.bucket, Key=self._shard(shard_id) + MARK,
                                     Body=json.dumps(new_mark).encode())
        self._marks[shard_id] = new_mark

    async def _keys(self, prefix: str, delimiter: str | None = None) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        extra = {"Delimiter": delimiter} if delimiter else {}
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, **extra):
            keys += [o["Key"] for o in page.get("Contents", [])]
            keys += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return sorted(keys)

    async def marks(self) -> dict[str, str]:
        marks = {}
        for shard_prefix in await self._keys(self.prefix, "/"):
            shard_id = shard_prefix[len(self.prefix):].rstrip("/")
            self._marks.pop(shard_id, None)  # read afresh: another writer may have moved it
            mark = await self._mark(shard_id)
            if mark is not None:
                marks[shard_id] = mark["sequence"]
        return marks

    async def read(self, shard_id: str) -> AsyncIterator[list[Record]]:
        self._marks.pop(shard_id, None)
        mark = await self._mark(shard_id)
        if mark is None:
            return
        end = sequence_key(mark["sequence"])
        last = -1
        for key in await self._keys(self._shard(shard_id)):
            if not key.endswith(".ndjson.gz"):
                continue
            answer = await self.client.get_object(Bucket=self.bucket, Key=key)
            async with answer["Body"] as body:
                records = decode_lines(shard_id, gzip.decompress(await body.read()))
            fresh = []
            for record in records:
                position = sequence_key(record.sequence)
                if last < position <= end:  # an object past the mark, or rewritten, repeats some
                    fresh.append(record)
                    last = position
            for chunk in chunks(iter(fresh)):
                yield chunk
            if last >= end:
                return

    async def close(self) -> None:
        if self._exit_stack is not None:
            await self._exit_stack.aclose()
            self._exit_stack = None
