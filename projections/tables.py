"""The projection table layouts: the one source of truth for DynamoDB, SQLite and Terraform.

Each table has a partition key, an optional sort key and typed attributes (DynamoDB's types:
S string, N number, B binary, BOOL). The SQLite store builds its schema from these specs, the
DynamoDB store its CreateTable requests, the Terraform generator its `aws_dynamodb_table`s.

Posts and timelines are ordered by (ts, post_id): their sort key is the zero-padded ts, '#',
and the post_id, so string order is (ts, post_id) order in DynamoDB, SQLite and Python alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from projections.records import SortKey

AttributeType = Literal["S", "N", "B", "BOOL"]

# 10**16 ms is about 300 000 years: wide enough for any ts, fixed so strings sort as numbers.
TS_WIDTH = 16
# Kinesis sequence numbers have at most 129 digits.
SEQUENCE_WIDTH = 129


def sort_key(key: SortKey) -> str:
    ts, post_id = key
    if not 0 <= ts < 10**TS_WIDTH:
        raise ValueError(f"ts {ts} is outside 0..10**{TS_WIDTH}")
    return f"{ts:0{TS_WIDTH}d}#{post_id}"


def parse_sort_key(value: str) -> SortKey:
    ts, _, post_id = value.partition("#")
    return int(ts), post_id


def sequence_position(sequence: str) -> str:
    """A shard sequence number as a string that sorts like the number (for "never go back")."""
    if not sequence.isdecimal() or not sequence.isascii() or len(sequence) > SEQUENCE_WIDTH:
        raise ValueError(f"sequence {sequence!r} is not a decimal sequence number")
    return sequence.zfill(SEQUENCE_WIDTH)


@dataclass(frozen=True, slots=True)
class GlobalIndex:
    name: str
    partition_key: str
    sort_key: str | None = None


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    partition_key: str
    sort_key: str | None
    # Every attribute of an item, keys first, with its DynamoDB type.
    attributes: tuple[tuple[str, AttributeType], ...]
    indexes: tuple[GlobalIndex, ...] = ()

    @property
    def key(self) -> tuple[str, ...]:
        return (self.partition_key,) if self.sort_key is None else (self.partition_key, self.sort_key)

    def type_of(self, attribute: str) -> AttributeType:
        return dict(self.attributes)[attribute]

    def key_attributes(self) -> list[tuple[str, AttributeType]]:
        """The attributes DynamoDB must declare: those in the table's or an index's key."""
        keyed = set(self.key)
        for index in self.indexes:
            keyed |= {index.partition_key} | ({index.sort_key} if index.sort_key else set())
        return [(name, kind) for name, kind in self.attributes if name in keyed]


USERS = TableSpec(
    "users",
    "user_id",
    None,
    (("user_id", "S"), ("handle", "S"), ("display_name", "S"), ("followers", "N"),
     ("celebrity", "BOOL")),
)
# The follow graph twice, once per direction, so both pages are key-range queries.
FOLLOWERS = TableSpec(
    "followers", "user_id", "follower_id", (("user_id", "S"), ("follower_id", "S"))
)
FOLLOWING = TableSpec(
    "following", "user_id", "followee_id", (("user_id", "S"), ("followee_id", "S"))
)
POSTS = TableSpec(
    "posts",
    "author_id",
    "ts_post_id",
    (("author_id", "S"), ("ts_post_id", "S"), ("post_id", "S"), ("body", "S"), ("ts", "N")),
)
# A table, not an index of POSTS: BatchGetItem reads tables only, and strongly consistent.
POSTS_BY_ID = TableSpec(
    "posts_by_id",
    "post_id",
    None,
    (("post_id", "S"), ("author_id", "S"), ("body", "S"), ("ts", "N")),
)
TIMELINES = TableSpec(
    "timelines",
    "user_id",
    "ts_post_id",
    (("user_id", "S"), ("ts_post_id", "S"), ("post_id", "S"), ("author_id", "S"), ("ts", "N")),
)
# `position` is the zero-padded sequence, compared to never move the mark backwards.
APPLIED = TableSpec(
    "applied", "shard_id", None, (("shard_id", "S"), ("sequence", "S"), ("position", "S"))
)
DEAD_LETTERS = TableSpec(
    "dead_letters",
    "shard_id",
    "sequence",
    (("shard_id", "S"), ("sequence", "S"), ("error", "S"), ("payload", "B"), ("attempts", "N"),
     ("failed_at_ms", "N")),
)

TABLES: tuple[TableSpec, ...] = (
    USERS, FOLLOWERS, FOLLOWING, POSTS, POSTS_BY_ID, TIMELINES, APPLIED, DEAD_LETTERS
)


def create_table_request(spec: TableSpec, prefix: str) -> dict[str, Any]:
    """The DynamoDB CreateTable request for `spec` (on-demand billing)."""

    def key_schema(partition_key: str, sort: str | None) -> list[dict[str, str]]:
        schema = [{"AttributeName": partition_key, "KeyType": "HASH"}]
        if sort is not None:
            schema.append({"AttributeName": sort, "KeyType": "RANGE"})
        return schema

    request: dict[str, Any] = {
        "TableName": prefix + spec.name,
        "KeySchema": key_schema(spec.partition_key, spec.sort_key),
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind} for name, kind in spec.key_attributes()
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if spec.indexes:
        request["GlobalSecondaryIndexes"] = [
            {"IndexName": index.name, "KeySchema": key_schema(index.partition_key, index.sort_key),
             "Projection": {"ProjectionType": "ALL"}}
            for index in spec.indexes
        ]
    return request


# --- the API's own tables (engineer F1): sign-up credentials and idempotent answers ----------
# Not projections (the stream cannot rebuild them), hence outside TABLES; Terraform wants both.
ACCOUNTS = TableSpec(
    "accounts",
    "handle",
    None,
    (("handle", "S"), ("user_id", "S"), ("password_hash", "S")),
    indexes=(GlobalIndex("by_user_id", "user_id"),),
)
IDEMPOTENCY = TableSpec(
    "idempotency",
    "idempotency_key",
    None,
    (("idempotency_key", "S"), ("fingerprint", "S"), ("created_ms", "N"), ("answer_status", "N"),
     ("answer_body", "B")),
)
ACCOUNT_TABLES: tuple[TableSpec, ...] = (ACCOUNTS, IDEMPOTENCY)
