"""The LeaseStore port on a DynamoDB table (aiobotocore), also run against dynalite.

One item per shard: `shard_id` (hash key), `owner` (absent while unowned), `counter`,
`checkpoint`, `parent_ids` (a list). Every change is an UpdateItem whose ConditionExpression
names the counter (and owner) the caller saw and which bumps the counter; a failed condition
answers None and changes nothing. Throttling is retried by botocore's standard mode; a retried
write whose first answer was lost may report a lost lease it still holds: the safe direction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from streams.lease_rules import check_checkpoint, check_held, check_owner
from streams.leases import TRIM_HORIZON, Lease
from streams.log import Shard

_NAMES = {"#s": "shard_id", "#o": "owner", "#c": "counter", "#k": "checkpoint"}


def _code(exc: ClientError) -> str:
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code


def _lease(item: dict[str, Any]) -> Lease:
    return Lease(
        shard_id=item["shard_id"]["S"],
        owner=item["owner"]["S"] if "owner" in item else None,
        counter=int(item["counter"]["N"]),
        checkpoint=item["checkpoint"]["S"],
        parent_ids=tuple(p["S"] for p in item.get("parent_ids", {}).get("L", [])),
    )


class DynamoDBLeaseStore:
    """Build it with `await DynamoDBLeaseStore.connect(table_name, ...)`, then `await ensure_table()`."""

    def __init__(self, client: Any, table_name: str, *, exit_stack: AsyncExitStack | None = None) -> None:
        self.client = client  # an aiobotocore DynamoDB client
        self.table_name = table_name
        self._exit_stack = exit_stack

    @classmethod
    async def connect(
        cls, table_name: str, *, endpoint_url: str | None = None, region: str = "us-east-1"
    ) -> DynamoDBLeaseStore:
        """Open a client; `endpoint_url` None means real AWS (credentials from the default chain)."""
        stack = AsyncExitStack()
        config = AioConfig(retries={"mode": "standard", "max_attempts": 5})
        creating = get_session().create_client(
            "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
        )
        client = await stack.enter_async_context(creating)
        return cls(client, table_name, exit_stack=stack)

    async def close(self) -> None:
        if self._exit_stack is not None:
            await self._exit_stack.aclose()
            self._exit_stack = None

    async def ensure_table(self, timeout_s: float = 120.0) -> None:
        """Create the lease table if it is missing (on-demand billing), then wait until ACTIVE."""
        try:
            await self.client.create_table(
                TableName=self.table_name,
                KeySchema=[{"AttributeName": "shard_id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "shard_id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if _code(exc) != "ResourceInUseException":  # it exists already: fine
                raise
        deadline = time.monotonic() + timeout_s
        while True:
            answer = await self.client.describe_table(TableName=self.table_name)
            if answer["Table"]["TableStatus"] == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"lease table {self.table_name} not ACTIVE after {timeout_s} s")
            await asyncio.sleep(0.25)

    async def ensure(self, shards: Sequence[Shard]) -> None:
        # In the order given: the consumer lists parents first, so a child never has a lease
        # while its parent's is still missing.
        for shard in shards:
            try:
                await self.client.put_item(
                    TableName=self.table_name,
                    Item={
                        "shard_id": {"S": shard.shard_id},
                        "counter": {"N": "0"},
                        "checkpoint": {"S": TRIM_HORIZON},
                        "parent_ids": {"L": [{"S": p} for p in shard.parent_ids]},
                    },
                    ConditionExpression="attribute_not_exists(#s)",
                    ExpressionAttributeNames={"#s": "shard_id"},
                )
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":  # it exists: keep it as it is
                    raise

    async def list(self) -> list[Lease]:
        leases: list[Lease] = []
        kwargs: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": True}
        while True:
            page = await self.client.scan(**kwargs)
            leases.extend(_lease(item) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return sorted(leases, key=lambda lease: lease.shard_id)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def _update(
        self, lease: Lease, clause: str = "", values: dict[str, Any] | None = None
    ) -> Lease | None:
        """Apply `clause` (SET/REMOVE) and bump the counter, only if the item is still as `lease` says."""
        update = f"{clause} ADD #c :one".strip()
        values = {**(values or {}), ":seen": {"N": str(lease.counter)}, ":one": {"N": "1"}}
        condition = "attribute_exists(#s) AND #c = :seen"
        if lease.owner is None:
            condition += " AND attribute_not_exists(#o)"
        else:
            condition += " AND #o = :was"
            values[":was"] = {"S": lease.owner}
        used = {name: attr for name, attr in _NAMES.items() if name in update or name in condition}
        try:
            answer = await self.client.update_item(
                TableName=self.table_name,
                Key={"shard_id": {"S": lease.shard_id}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=used,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return _lease(answer["Attributes"])

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        check_owner(owner)
        return await self._update(lease, "SET #o = :owner", {":owner": {"S": owner}})

    async def renew(self, lease: Lease) -> Lease | None:
        check_held(lease)
        return await self._update(lease)

    async def checkpoint(self, lease: Lease, checkpoint: str) -> Lease | None:
        check_held(lease)
        check_checkpoint(checkpoint)
        return await self._update(lease, "SET #k = :checkpoint", {":checkpoint": {"S": checkpoint}})

    async def release(self, lease: Lease) -> None:
        check_held(lease)
        await self._update(lease, "REMOVE #o")
