"""DynamoDBPointer: the projection-version pointer as one item of its own DynamoDB table.

The table (`<prefix>projection_versions`, key `name`) lies outside every version's tables, so
dropping old versions never touches it. Reads are strongly consistent.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import msgspec
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from projections.tables import TableSpec, create_table_request
from projections.versions import Versions, decode_versions

VERSIONS_TABLE = TableSpec("projection_versions", "name", None, (("name", "S"), ("versions", "S")))
_KEY = {"name": {"S": "projections"}}


class DynamoDBPointer:
    def __init__(self, client: Any, table_prefix: str, exit_stack: AsyncExitStack | None = None) -> None:
        self.client = client
        self.table = table_prefix + VERSIONS_TABLE.name
        self._prefix = table_prefix
        self._exit_stack = exit_stack

    @classmethod
    async def connect(cls, *, endpoint_url: str | None = None, region: str = "us-east-1",
                      table_prefix: str = "fanline-") -> DynamoDBPointer:
        stack = AsyncExitStack()
        client = await stack.enter_async_context(
            get_session().create_client("dynamodb", region_name=region, endpoint_url=endpoint_url)
        )
        return cls(client, table_prefix, stack)

    async def ensure_table(self) -> None:
        try:
            await self.client.create_table(**create_table_request(VERSIONS_TABLE, self._prefix))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
        waiter = self.client.get_waiter("table_exists")
        await waiter.wait(TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    async def get(self) -> Versions:
        try:
            answer = await self.client.get_item(TableName=self.table, Key=_KEY, ConsistentRead=True)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return Versions()  # no replay has ever switched: the first version
            raise
        item = answer.get("Item")
        return Versions() if item is None else decode_versions(item["versions"]["S"])

    async def set(self, versions: Versions) -> None:
        value = msgspec.json.encode(versions).decode()
        await self.client.put_item(TableName=self.table, Item={**_KEY, "versions": {"S": value}})

    async def close(self) -> None:
        if self._exit_stack is not None:
            await self._exit_stack.aclose()
            self._exit_stack = None
