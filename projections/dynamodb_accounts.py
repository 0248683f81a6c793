"""DynamoDBAccounts: the AccountStore port on two DynamoDB tables (also run against dynalite).

Races are decided by condition expressions (`attribute_not_exists`), never read-then-write.
Table layouts: `projections.tables.ACCOUNTS` and `IDEMPOTENCY`. botocore's standard retry mode
handles throttling (backoff with jitter), so this adapter has no retry loop of its own.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from projections.account_records import Account, IdempotencyRecord
from projections.tables import ACCOUNT_TABLES, ACCOUNTS, IDEMPOTENCY, create_table_request


def _conditional_failed(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


# A pending claim has no body yet: a one-byte placeholder keeps clear of empty binary values,
# which older DynamoDB versions and emulators refuse.
_NO_BODY = b"-"


def _record(item: dict[str, Any]) -> IdempotencyRecord:
    status = int(item["answer_status"]["N"])
    return IdempotencyRecord(
        key=item["idempotency_key"]["S"],
        fingerprint=item["fingerprint"]["S"],
        created_ms=int(item["created_ms"]["N"]),
        status=status,
        body=bytes(item["answer_body"]["B"]) if status else b"",
    )


class DynamoDBAccounts:
    """Build it with `await DynamoDBAccounts.connect(...)`; `ensure_tables()` creates missing tables."""

    def __init__(self, client: Any, table_prefix: str, exit_stack: AsyncExitStack | None = None) -> None:
        self.client = client
        self._accounts = table_prefix + ACCOUNTS.name
        self._idempotency = table_prefix + IDEMPOTENCY.name
        self._prefix = table_prefix
        self._exit_stack = exit_stack

    @classmethod
    async def connect(
        cls, table_prefix: str, *, endpoint_url: str | None = None, region: str = "us-east-1"
    ) -> DynamoDBAccounts:
        """`endpoint_url` None means AWS itself (credentials from the default chain)."""
        stack = AsyncExitStack()
        config = AioConfig(retries={"mode": "standard", "max_attempts": 5})
        creating = get_session().create_client(
            "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
        )
        client = await stack.enter_async_context(creating)
        return cls(client, table_prefix, stack)

    async def ensure_tables(self) -> None:
        existing: set[str] = set()
        paginator = self.client.get_paginator("list_tables")
        async for page in paginator.paginate():
            existing.update(page["TableNames"])
        for spec in ACCOUNT_TABLES:
            if self._prefix + spec.name not in existing:
                await self.client.create_table(**create_table_request(spec, self._prefix))
                waiter = self.client.get_waiter("table_exists")
                await waiter.wait(TableName=self._prefix + spec.name, WaiterConfig={"Delay": 1})

    async def create(self, account: Account) -> bool:
        try:
            await self.client.put_item(
                TableName=self._accounts,
                Item={
                    "handle": {"S": account.handle},
                    "user_id": {"S": account.user_id},
                    "password_hash": {"S": account.password_hash},
                },
                ConditionExpression="attribute_not_exists(handle)",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    async def by_handle(self, handle: str) -> Account | None:
        answer = await self.client.get_item(
            TableName=self._accounts, Key={"handle": {"S": handle}}, ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None:
            return None
        return Account(item["handle"]["S"], item["user_id"]["S"], item["password_hash"]["S"])

    async def exists(self, user_id: str) -> bool:
        # A global index is eventually consistent; the API also asks the users projection.
        answer = await self.client.query(
            TableName=self._accounts,
            IndexName=ACCOUNTS.indexes[0].name,
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
            Limit=1,
        )
        return bool(answer.get("Items"))

    async def delete(self, handle: str) -> None:
        await self.client.delete_item(TableName=self._accounts, Key={"handle": {"S": handle}})

    async def claim(self, record: IdempotencyRecord, stale_ms: int) -> IdempotencyRecord | None:
        while True:
            try:
                await self.client.put_item(
                    TableName=self._idempotency,
                    Item={
                        "idempotency_key": {"S": record.key},
                        "fingerprint": {"S": record.fingerprint},
                        "created_ms": {"N": str(record.created_ms)},
                        "answer_status": {"N": "0"},
                        "answer_body": {"B": _NO_BODY},
                    },
                    # New key, or a pending claim left by a crash long enough ago.
                    ConditionExpression="attribute_not_exists(idempotency_key)"
                    " OR (answer_status = :pending AND created_ms < :stale)",
                    ExpressionAttributeValues={
                        ":pending": {"N": "0"},
                        ":stale": {"N": str(record.created_ms - stale_ms)},
                    },
                )
                return None
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
            answer = await self.client.get_item(
                TableName=self._idempotency,
                Key={"idempotency_key": {"S": record.key}},
                ConsistentRead=True,
            )
            if "Item" in answer:  # else it was released in between: try again
                return _record(answer["Item"])

    async def complete(self, key: str, status: int, body: bytes) -> None:
        await self.client.update_item(
            TableName=self._idempotency,
            Key={"idempotency_key": {"S": key}},
            UpdateExpression="SET answer_status = :s, answer_body = :b",
            ExpressionAttributeValues={":s": {"N": str(status)}, ":b": {"B": body or _NO_BODY}},
        )

    async def release(self, key: str) -> None:
        try:
            await self.client.delete_item(
                TableName=self._idempotency,
                Key={"idempotency_key": {"S": key}},
                ConditionExpression="answer_status = :pending",
                ExpressionAttributeValues={":pending": {"N": "0"}},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    async def close(self) -> None:
        if self._exit_stack is not None:
            await self._exit_stack.aclose()
            self._exit_stack = None
