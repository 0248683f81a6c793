"""A DynamoDB store's items in key order (see projections.items): a scan, sorted here."""

from __future__ import annotations

from typing import Any

from projections.dynamodb_store import DynamoDBStore, decode
from projections.items import Row, columns
from projections.tables import TableSpec


async def dynamodb_rows(store: DynamoDBStore, spec: TableSpec) -> list[Row]:
    names = columns(spec)
    rows: list[Row] = []
    request: dict[str, Any] = {"TableName": store.table(spec), "ConsistentRead": True}
    while True:
        answer = await store.client.scan(**request)
        for item in answer.get("Items", []):
            values = decode(item)
            rows.append(tuple(values[name] for name in names))
        if "LastEvaluatedKey" not in answer:
            break
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
    width = len(spec.key)
    rows.sort(key=lambda row: row[:width])
    return rows
