"""DynamoDBStore: the Store port on DynamoDB tables (aiobotocore), also run against dynalite.

Writes go out as BatchWriteItem calls of at most 25 requests, several at once. DynamoDB neither
orders the requests of a batch nor accepts two for one key, so a batch's writes are reduced to
the last one per key first (mutations are absolute, so the last one is the state to reach).
TrimTimelines reads, so it closes the run of writes before it. The applied mark is written
last, with a condition that never moves it backwards.

Throttling, unprocessed items or keys and dropped connections are retried here with
exponential backoff and full jitter (tenacity), then answered with StoreUnavailable; botocore's
own retries are off so the two do not multiply.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from projections import feed
from projections.records import (
    DeadLetter,
    DeleteFollow,
    DeletePost,
    DeleteTimelineEntries,
    Mutation,
    Post,
    PutFollow,
    PutPost,
    PutTimelineEntries,
    PutUser,
    SortKey,
    TimelineEntry,
    TrimTimelines,
    User,
)
from projections.store import StoreUnavailable
from projections.tables import (
    APPLIED,
    DEAD_LETTERS,
    FOLLOWERS,
    FOLLOWING,
    POSTS,
    POSTS_BY_ID,
    TABLES,
    TIMELINES,
    USERS,
    TableSpec,
    create_table_request,
    sequence_position,
    sort_key,
)

R = TypeVar("R")
Item = dict[str, Any]

BATCH_WRITE_MAX = 25
BATCH_GET_MAX = 100
_RETRYABLE_CODES = {
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "LimitExceededException",
}


class _Unfinished(Exception):
    """Some items or keys came back unprocessed: send them again after a pause."""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in _RETRYABLE_CODES
    return isinstance(exc, _Unfinished | BotoConnectionError | HTTPClientError)


def _code(exc: ClientError) -> str:
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code


# --- items -------------------------------------------------------------------------------------


# Attribute types by table, looked up once per value when items are built.
_TYPES = {spec.name: dict(spec.attributes) for spec in TABLES}


def encode(spec: TableSpec, values: dict[str, Any]) -> Item:
    """A DynamoDB item from plain values, typed by the table spec."""
    types = _TYPES.get(spec.name) or dict(spec.attributes)
    item: Item = {}
    for name, value in values.items():
        kind = types[name]
        item[name] = {kind: str(value) if kind == "N" else value}
    return item


def decode(item: Item) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, typed in item.items():
        (kind, value), = typed.items()
        values[name] = int(value) if kind == "N" else bytes(value) if kind == "B" else value
    return values


def _post(item: Item) -> Post:
    v = decode(item)
    return Post(v["post_id"], v["author_id"], v["body"], v["ts"])


Write = tuple[TableSpec, Item, bool]  # (table, item or key, is a put)


def _writes(mutation: Mutation) -> list[Write]:
    """Puts and deletes for one mutation (TrimTimelines aside: it needs a read)."""
    match mutation:
        case PutUser(u):
            return [(USERS, encode(USERS, {"user_id": u.user_id, "handle": u.handle,
                                           "display_name": u.display_name,
                                           "followers": u.followers, "celebrity": u.celebrity}),
                     True)]
        case PutFollow(follower, followee) | DeleteFollow(follower, followee):
            put = isinstance(mutation, PutFollow)
            return [(FOLLOWERS, encode(FOLLOWERS, {"user_id": followee, "follower_id": follower}), put),
                    (FOLLOWING, encode(FOLLOWING, {"user_id": follower, "followee_id": followee}), put)]
        case PutPost(p):
            fields = {"post_id": p.post_id, "author_id": p.author_id, "body": p.body, "ts": p.ts}
            return [(POSTS, encode(POSTS, {**fields, "ts_post_id": sort_key(p.key)}), True),
                    (POSTS_BY_ID, encode(POSTS_BY_ID, fields), True)]
        case DeletePost(author_id, post_id, ts):
            return [(POSTS, encode(POSTS, {"author_id": author_id,
                                           "ts_post_id": sort_key((ts, post_id))}), False),
                    (POSTS_BY_ID, encode(POSTS_BY_ID, {"post_id": post_id}), False)]
        case PutTimelineEntries(entries):
            # The bulk of fan-out: items built directly (the types of TIMELINES), not via encode.
            return [(TIMELINES, {"user_id": {"S": e.user_id}, "ts_post_id": {"S": sort_key(e.key)},
                                 "post_id": {"S": e.post_id}, "author_id": {"S": e.author_id},
                                 "ts": {"N": str(e.ts)}}, True) for e in entries]
        case DeleteTimelineEntries(keys):
            return [(TIMELINES, encode(TIMELINES, {"user_id": user_id,
                                                   "ts_post_id": sort_key((ts, post_id))}), False)
                    for user_id, ts, post_id in keys]
        case TrimTimelines(_, cap):
            if cap < 0:
                raise ValueError(f"timeline cap {cap} is negative")
            return []
    raise TypeError(f"not a mutation: {mutation!r}")


def _identity(write: Write) -> tuple[str, ...]:
    """Table and key of a write. Every key attribute in projections.tables is a string (S)."""
    spec, item, _ = write
    if spec.sort_key is None:
        return spec.name, item[spec.partition_key]["S"]
    return spec.name, item[spec.partition_key]["S"], item[spec.sort_key]["S"]


def plan_writes(mutations: Sequence[Mutation]) -> list[list[Write] | TrimTimelines]:
    """The batch as runs of writes, one per key (the last), split where a trim must read.

    Everything is built before anything is sent, so bad input raises with nothing written.
    """
    steps: list[dict[tuple[str, ...], Write] | TrimTimelines] = [{}]
    for mutation in mutations:
        writes = _writes(mutation)
        if isinstance(mutation, TrimTimelines):
            steps += [mutation, {}]
        run = steps[-1]
        assert isinstance(run, dict)
        for write in writes:
            run[_identity(write)] = write  # the last write per key wins
    return [step if isinstance(step, TrimTimelines) else list(step.values())
            for step in steps if step]


class DynamoDBStore(feed.ComposedFeeds):
    """Build it with `await DynamoDBStore.connect(...)`; `create_tables()` makes missing tables."""

    def __init__(
        self,
        client: Any,
        table_prefix: str,
        *,
        exit_stack: AsyncExitStack | None = None,
        attempts: int = 8,
        max_wait_s: float = 2.0,
        concurrency: int = 8,
    ) -> None:
        self.client = client  # an aiobotocore DynamoDB client (or a test double)
        self.prefix = table_prefix
        self._exit_stack = exit_stack
        self._attempts = attempts
        self._max_wait_s = max_wait_s
        self._limit = asyncio.Semaphore(concurrency)

    @classmethod
    async def connect(
        cls,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        table_prefix: str = "fanline-",
        concurrency: int = 8,
    ) -> DynamoDBStore:
        """Open a client; `endpoint_url` None means AWS itself (credentials from the usual chain)."""
        stack = AsyncExitStack()
        config = AioConfig(
            retries={"mode": "standard", "max_attempts": 1},  # retried here instead
            max_pool_connections=max(10, 2 * concurrency),
        )
        creating = get_session().create_client(
            "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
        )
        client = await stack.enter_async_context(creating)
        return cls(client, table_prefix, exit_stack=stack, concurrency=concurrency)

    def table(self, spec: TableSpec) -> str:
        return self.prefix + spec.name

    async def create_tables(self) -> None:
        """Create every missing table and wait until all are ACTIVE (safe to call again)."""
        for spec in TABLES:
            try:
                await self.client.create_table(**create_table_request(spec, self.prefix))
            except ClientError as exc:
                if _code(exc) != "ResourceInUseException":  # it exists already: fine
                    raise
        for spec in TABLES:
            waiter = self.client.get_waiter("table_exists")
            await waiter.wait(TableName=self.table(spec), WaiterConfig={"Delay": 1, "MaxAttempts": 120})

    # --- calls with retries ------------------------------------------------------------------
    async def _retry(self, call: Callable[[], Awaitable[R]]) -> R:
        retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            wait=wait_random_exponential(multiplier=0.05, max=self._max_wait_s),
            stop=stop_after_attempt(self._attempts),
            reraise=True,
        )

        async def run() -> R:  # a coroutine function, so tenacity awaits it (a lambda it would not)
            return await call()

        try:
            async with self._limit:
                return await retrying(run)
        except (_Unfinished, BotoConnectionError, HTTPClientError) as exc:
            raise StoreUnavailable(f"dynamodb: {exc!r} after {self._attempts} attempts") from exc
        except ClientError as exc:
            if _retryable(exc):
                raise StoreUnavailable(f"dynamodb: {_code(exc)} after {self._attempts} attempts") from exc
            raise

    async def _batch_write(self, writes: Sequence[Write]) -> None:
        pending: dict[str, list[Item]] = {}
        for spec, item, put in writes:
            request = {"PutRequest": {"Item": item}} if put else {"DeleteRequest": {"Key": item}}
            pending.setdefault(self.table(spec), []).append(request)

        async def attempt() -> None:
            nonlocal pending
            answer = await self.client.batch_write_item(RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if pending:
                raise _Unfinished(f"{sum(map(len, pending.values()))} unprocessed items")

        await self._retry(attempt)

    async def _batch_get(self, spec: TableSpec, keys: Collection[str]) -> list[Item]:
        """Items of `spec` by partition key (a table without sort key), 100 keys per call."""
        unique = list(dict.fromkeys(keys))  # BatchGetItem refuses duplicate keys
        name = self.table(spec)
        found: list[Item] = []

        async def get(chunk: list[str]) -> None:
            pending: dict[str, Any] = {name: {
                "Keys": [{spec.partition_key: {"S": key}} for key in chunk], "ConsistentRead": True,
            }}

            async def attempt() -> None:
                nonlocal pending
                answer = await self.client.batch_get_item(RequestItems=pending)
                found.extend(answer.get("Responses", {}).get(name, []))
                pending = answer.get("UnprocessedKeys") or {}
                if pending:
                    raise _Unfinished(f"{len(pending[name]['Keys'])} unprocessed keys")

            await self._retry(attempt)

        await asyncio.gather(*(get(unique[i:i + BATCH_GET_MAX])
                               for i in range(0, len(unique), BATCH_GET_MAX)))
        return found

    async def _query(self, limit: int | None = None, **request: Any) -> AsyncIterator[Item]:
        """Items of one Query, following LastEvaluatedKey, at most `limit` of them."""
        if limit is not None and limit <= 0:
            return  # DynamoDB refuses Limit=0
        request = {"ConsistentRead": True, **request}
        seen = 0
        while True:
            if limit is not None:
                request["Limit"] = limit - seen
            answer = await self._retry(lambda: self.client.query(**request))
            for item in answer.get("Items", []):
                yield item
                seen += 1
            if "LastEvaluatedKey" not in answer or (limit is not None and seen >= limit):
                return
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def _range(
        self, spec: TableSpec, partition: str, *, below: str | None = None,
        above: str | None = None, newest_first: bool = False, limit: int | None = None,
        projection: Sequence[str] | None = None,
    ) -> AsyncIterator[Item]:
        """One partition's items in sort-key order, optionally bounded (exclusive) on either side."""
        assert spec.sort_key is not None
        names = {"#p": spec.partition_key}
        if below is not None or above is not None:
            names["#s"] = spec.sort_key  # DynamoDB refuses names an expression does not use
        values: dict[str, Any] = {":p": {"S": partition}}
        condition = "#p = :p"
        if below is not None:
            condition += " AND #s < :b"
            values[":b"] = {"S": below}
        if above is not None:
            condition += " AND #s > :a"
            values[":a"] = {"S": above}
        request: dict[str, Any] = {
            "TableName": self.table(spec), "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values, "ScanIndexForward": not newest_first,
        }
        if projection:
            names |= {f"#x{i}": attr for i, attr in enumerate(projection)}
            request["ProjectionExpression"] = ", ".join(f"#x{i}" for i in range(len(projection)))
        request["ExpressionAttributeNames"] = names
        return self._query(limit, **request)

    # --- writes (the runner) -----------------------------------------------------------------
    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        position = sequence_position(sequence)
        steps = list(plan_writes(mutations))  # bad input is refused before anything is sent
        if await self._mark_position(shard_id) > position:
            # A late writer's batch (Store.apply): checked first, so the window is narrowed, not closed.
            return
        for step in steps:
            if isinstance(step, TrimTimelines):
                await self._trim(step)
            else:
                await self._write_all(step)
        await self._set_applied(shard_id, sequence, position)

    async def _write_all(self, writes: Sequence[Write]) -> None:
        chunks = [writes[i:i + BATCH_WRITE_MAX] for i in range(0, len(writes), BATCH_WRITE_MAX)]
        await asyncio.gather(*(self._batch_write(chunk) for chunk in chunks))

    async def _trim(self, trim: TrimTimelines) -> None:
        async def beyond_cap(user_id: str) -> list[Write]:
            extra: list[Write] = []
            position = 0
            async for key in self._range(TIMELINES, user_id, newest_first=True,
                                         projection=TIMELINES.key):
                position += 1
                if position > trim.cap:
                    extra.append((TIMELINES, key, False))
            return extra

        doomed = await asyncio.gather(*(beyond_cap(u) for u in dict.fromkeys(trim.user_ids)))
        await self._write_all([write for writes in doomed for write in writes])

    async def _mark_position(self, shard_id: str) -> str:
        """The shard's applied mark as a sortable position; "" when it has none."""
        answer = await self._retry(lambda: self.client.get_item(
            TableName=self.table(APPLIED), Key={"shard_id": {"S": shard_id}}, ConsistentRead=True,
        ))
        item = answer.get("Item")
        return str(item["position"]["S"]) if item else ""

    async def _set_applied(self, shard_id: str, sequence: str, position: str) -> None:
        async def attempt() -> None:
            try:
                await self.client.put_item(
                    TableName=self.table(APPLIED),
                    Item=encode(APPLIED, {"shard_id": shard_id, "sequence": sequence,
                                          "position": position}),
                    ConditionExpression="attribute_not_exists(#p) OR #p < :p",
                    ExpressionAttributeNames={"#p": "position"},
                    ExpressionAttributeValues={":p": {"S": position}},
                )
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":  # already at or past it
                    raise

        await self._retry(attempt)

    async def applied(self) -> dict[str, str]:
        marks: dict[str, str] = {}
        request: dict[str, Any] = {"TableName": self.table(APPLIED), "ConsistentRead": True}
        while True:
            answer = await self._retry(lambda: self.client.scan(**request))
            for item in answer.get("Items", []):
                marks[item["shard_id"]["S"]] = item["sequence"]["S"]
            if "LastEvaluatedKey" not in answer:
                return marks
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    # --- state for the folds -----------------------------------------------------------------
    async def users(self, user_ids: Collection[str]) -> dict[str, User]:
        users = {}
        for item in await self._batch_get(USERS, user_ids):
            v = decode(item)
            users[v["user_id"]] = User(v["user_id"], v["handle"], v["display_name"], v["followers"],
                                       v["celebrity"])
        return users

    async def follower_ids(self, user_id: str) -> set[str]:
        return {i["follower_id"]["S"] async for i in self._range(FOLLOWERS, user_id,
                                                                 projection=["follower_id"])}

    async def recent_posts(self, author_id: str, limit: int) -> list[Post]:
        return await self.posts_page(author_id, limit, None)

    # --- reads (the API) ---------------------------------------------------------------------
    async def following_count(self, user_id: str) -> int:
        request: dict[str, Any] = {
            "TableName": self.table(FOLLOWING), "KeyConditionExpression": "#p = :p",
            "ExpressionAttributeNames": {"#p": "user_id"},
            "ExpressionAttributeValues": {":p": {"S": user_id}},
            "Select": "COUNT", "ConsistentRead": True,
        }
        count = 0
        while True:
            answer = await self._retry(lambda: self.client.query(**request))
            count += int(answer["Count"])
            if "LastEvaluatedKey" not in answer:
                return count
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    async def followers_page(self, user_id: str, limit: int, after: str | None) -> list[str]:
        return [i["follower_id"]["S"] async for i in self._range(
            FOLLOWERS, user_id, above=after, limit=limit, projection=["follower_id"])]

    async def following_page(self, user_id: str, limit: int, after: str | None) -> list[str]:
        return [i["followee_id"]["S"] async for i in self._range(
            FOLLOWING, user_id, above=after, limit=limit, projection=["followee_id"])]

    async def following_ids(self, user_id: str) -> list[str]:
        return [i["followee_id"]["S"] async for i in self._range(
            FOLLOWING, user_id, projection=["followee_id"])]

    async def posts_page(self, author_id: str, limit: int, before: SortKey | None) -> list[Post]:
        if limit <= 0:
            return []
        below = None if before is None else sort_key(before)
        return [_post(i) async for i in self._range(POSTS, author_id, below=below,
                                                    newest_first=True, limit=limit)]

    async def posts_of_authors(
        self, author_ids: Collection[str], limit: int, before: SortKey | None
    ) -> list[Post]:
        # One query per author, `self._limit` of them at a time, merged newest first.
        pages = await asyncio.gather(
            *(self.posts_page(a, limit, before) for a in dict.fromkeys(author_ids))
        )
        merged = heapq.merge(*pages, key=lambda p: p.key, reverse=True)
        return [post for _, post in zip(range(limit), merged, strict=False)]

    async def posts_by_id(self, post_ids: Collection[str]) -> dict[str, Post]:
        return {p.post_id: p for p in map(_post, await self._batch_get(POSTS_BY_ID, post_ids))}

    async def timeline_page(
        self, user_id: str, limit: int, before: SortKey | None
    ) -> list[TimelineEntry]:
        if limit <= 0:
            return []
        below = None if before is None else sort_key(before)
        entries = []
        async for item in self._range(TIMELINES, user_id, below=below, newest_first=True,
                                      limit=limit):
            v = decode(item)
            entries.append(TimelineEntry(v["user_id"], v["ts"], v["post_id"], v["author_id"]))
        return entries

    # --- dead letters ------------------------------------------------------------------------
    async def put_dead_letter(self, letter: DeadLetter) -> None:
        item = encode(DEAD_LETTERS, {
            "shard_id": letter.shard_id, "sequence": letter.sequence, "error": letter.error,
            "payload": letter.payload, "attempts": letter.attempts,
            "failed_at_ms": letter.failed_at_ms,
        })
        await self._retry(lambda: self.client.put_item(TableName=self.table(DEAD_LETTERS), Item=item))

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        request: dict[str, Any] = {"TableName": self.table(DEAD_LETTERS), "ConsistentRead": True}
        while len(letters) < limit:
            request["Limit"] = limit - len(letters)
            answer = await self._retry(lambda: self.client.scan(**request))
            for item in answer.get("Items", []):
                v = decode(item)
                letters.append(DeadLetter(v["shard_id"], v["sequence"], v["error"], v["payload"],
                                          v["attempts"], v["failed_at_ms"]))
            if "LastEvaluatedKey" not in answer:
                break
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return letters

    async def delete_dead_letter(self, shard_id: str, sequence: str) -> None:
        key = encode(DEAD_LETTERS, {"shard_id": shard_id, "sequence": sequence})
        await self._retry(lambda: self.client.delete_item(TableName=self.table(DEAD_LETTERS), Key=key))

    # --- lifecycle ---------------------------------------------------------------------------
    async def ping(self) -> None:
        # One call, no retries: readiness should answer quickly either way.
        try:
            await self.client.describe_table(TableName=self.table(APPLIED))
        except (ClientError, BotoConnectionError, HTTPClientError) as exc:
            raise StoreUnavailable(f"dynamodb table {self.table(APPLIED)}: {exc}") from exc

    async def close(self) -> None:
        if self._exit_stack is not None:
            await self._exit_stack.aclose()
            self._exit_stack = None
