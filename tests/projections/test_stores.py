"""The Store contract, run against every adapter."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fanline.benchmarks.dynamodb_write import measure_dynamodb_ratio
from fanline.emulators import Emulator
from projections.dynamodb_store import DynamoDBStore
from projections.memory_store import MemoryStore
from projections.records import (
    DeleteTimelineEntries,
    Post,
    PutFollow,
    PutPost,
    PutTimelineEntries,
    PutUser,
    TimelineEntry,
    User,
)
from projections.sqlite_store import (
    FOLLOWING_COUNT,
    POSTS_OF_AUTHORS,
    POSTS_PAGE,
    SQLITE_TYPES,
    TIMELINE_PAGE,
    SQLiteStore,
)
from projections.store import Store, StoreUnavailable
from projections.tables import TABLES, create_table_request, sort_key
from tests.projections.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Store:
        return MemoryStore()


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        store = SQLiteStore(tmp_path / "projections.db")
        yield store
        await store.close()


class TestDynamoDBStore(StoreContract):
    @pytest.fixture
    async def store(self, dynalite: Emulator) -> AsyncIterator[Store]:
        store = await DynamoDBStore.connect(
            endpoint_url=dynalite.endpoint_url, table_prefix=f"t{uuid.uuid4().hex[:8]}-"
        )
        await store.create_tables()
        yield store
        await store.close()


# --- SQLite specifics ---------------------------------------------------------------------------


def _plan(db: Path, sql: str, *params: object) -> str:
    with sqlite3.connect(db) as conn:
        return "\n".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


async def test_memory_store_refuses_what_is_not_a_mutation_and_changes_nothing() -> None:
    store = MemoryStore()
    with pytest.raises(TypeError, match="not a mutation"):
        await store.apply([PutUser(User("alice", "alice", "Alice")), "PutUser"], "s", "1")  # type: ignore[list-item]
    assert await store.users(["alice"]) == {}
    assert await store.applied() == {}


async def test_memory_store_timeline_rows_are_the_live_entries_in_key_order() -> None:
    store = MemoryStore()

    def entry(ts: int) -> TimelineEntry:
        return TimelineEntry("u", ts, f"p{ts}", f"a{ts}")

    await store.apply([PutTimelineEntries(tuple(entry(ts) for ts in (4, 1, 5, 2)))], "s", "1")
    # A key deleted, one put twice, an older one put after newer ones: its key list has to be
    # compacted (and sorted) before it gives the rows.
    await store.apply([DeleteTimelineEntries((("u", 4, "p4"),)),
                       PutTimelineEntries((entry(5), entry(3), entry(0)))], "s", "2")
    timelines = next(spec for spec in TABLES if spec.name == "timelines")
    rows = list(store.rows(timelines))
    assert rows == [("u", sort_key((ts, f"p{ts}")), f"p{ts}", f"a{ts}", ts) for ts in (0, 1, 2, 3, 5)]
    assert list(store.rows(timelines)) == rows


async def test_sqlite_schema_agrees_with_the_table_specs(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    await store.close()
    with sqlite3.connect(tmp_path / "p.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        # and the adapter's own feed stamps (projections.sqlite_stamps), like an index
        assert tables == {spec.name for spec in TABLES} | {"reader_stamps", "author_stamps"}
        for spec in TABLES:
            info = conn.execute(f"PRAGMA table_info({spec.name})").fetchall()
            assert [(r[1], r[2]) for r in info] == [
                (name, SQLITE_TYPES[kind]) for name, kind in spec.attributes
            ]
            primary = sorted((r[5], r[1]) for r in info if r[5])
            assert tuple(name for _, name in primary) == spec.key


async def test_sqlite_reads_are_index_range_scans(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    await store.close()
    db = tmp_path / "p.db"
    for sql, table in ((TIMELINE_PAGE, "timelines"), (POSTS_PAGE, "posts")):
        plan = _plan(db, sql, "u", "9", 10)
        assert f"SEARCH {table} USING PRIMARY KEY" in plan
        assert "TEMP B-TREE" not in plan  # already in order: no sort
    assert "SEARCH following USING PRIMARY KEY (user_id=?)" in _plan(db, FOLLOWING_COUNT, "u")
    plan = _plan(db, POSTS_OF_AUTHORS, '["a", "b"]', "9", 10)
    assert "SCAN posts" not in plan


async def test_sqlite_posts_of_authors_merges_500_authors(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    authors = [f"a{i:03d}" for i in range(500)]
    posts = [PutPost(Post(f"{a}-{n}", a, "x", 1000 * n + i)) for i, a in enumerate(authors)
             for n in range(40)]
    await store.apply(posts, "s", "1")
    page = await store.posts_of_authors(authors, 50, None)
    assert [p.key for p in page] == sorted(
        (m.post.key for m in posts), reverse=True
    )[:50]
    await store.close()


async def test_sqlite_a_locked_database_raises_store_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db", attempts=2)
    other = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    with pytest.raises(StoreUnavailable):
        await store.apply([PutUser(User("u", "u", "U"))], "s", "1")
    other.execute("ROLLBACK")
    await store.apply([PutUser(User("u", "u", "U"))], "s", "1")
    assert await store.applied() == {"s": "1"}
    other.close()
    await store.close()


async def test_sqlite_readers_see_committed_state_only(tmp_path: Path) -> None:
    writer = SQLiteStore(tmp_path / "p.db")
    reader = SQLiteStore(tmp_path / "p.db")
    await writer.apply([PutFollow("a", "b")], "s", "1")
    assert await reader.follower_ids("b") == {"a"}
    # A batch that fails half way through its transaction leaves nothing behind.
    broken = User("z", "z", None)  # type: ignore[arg-type]  # violates NOT NULL in SQL
    with pytest.raises(sqlite3.IntegrityError):
        await writer.apply([PutFollow("c", "b"), PutUser(broken)], "s", "2")
    assert await reader.follower_ids("b") == {"a"}
    assert await reader.applied() == {"s": "1"}
    await writer.close()
    await reader.close()


# --- DynamoDB specifics -------------------------------------------------------------------------


async def test_dynamodb_tables_agree_with_the_table_specs(dynalite: Emulator) -> None:
    store = await DynamoDBStore.connect(endpoint_url=dynalite.endpoint_url, table_prefix="specs-")
    await store.create_tables()
    await store.create_tables()  # idempotent
    for spec in TABLES:
        table = (await store.client.describe_table(TableName=store.table(spec)))["Table"]
        expected = create_table_request(spec, "specs-")
        assert table["KeySchema"] == expected["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(
            expected["AttributeDefinitions"], key=str
        )
        indexes = {i["IndexName"]: i["KeySchema"] for i in table.get("GlobalSecondaryIndexes", [])}
        assert indexes == {
            i["IndexName"]: i["KeySchema"] for i in expected.get("GlobalSecondaryIndexes", [])
        }
    await store.close()


class FakeDynamoDB:
    """A client double: `batch_write_item` answers from a script, every call is recorded."""

    def __init__(self, answers: list[dict[str, Any] | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def batch_write_item(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("batch_write_item", request))
        answer = self.answers.pop(0) if self.answers else {}
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def put_item(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("put_item", request))
        return {}

    async def get_item(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("get_item", request))  # the applied mark, before a batch (no mark here)
        return {}


def _throttled() -> ClientError:
    error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
    return ClientError(error, "BatchWriteItem")  # type: ignore[arg-type]


def _entries(n: int) -> PutTimelineEntries:
    return PutTimelineEntries(tuple(TimelineEntry("r", i, f"p{i}", "a") for i in range(n)))


async def test_dynamodb_writes_in_chunks_of_25_and_resends_unprocessed_items() -> None:
    unprocessed: dict[str, Any] = {"t-timelines": [{"PutRequest": {"Item": {"x": {"S": "1"}}}}]}
    fake = FakeDynamoDB([{"UnprocessedItems": unprocessed}, _throttled()])
    store = DynamoDBStore(fake, "t-", attempts=5, max_wait_s=0.01, concurrency=1)
    # 60 distinct entries, each twice: duplicates never share a batch.
    await store.apply([_entries(60), _entries(60)], "s", "9")
    writes = [request for name, request in fake.calls if name == "batch_write_item"]
    sizes = [sum(map(len, w["RequestItems"].values())) for w in writes]
    assert sizes == [25, 1, 1, 25, 10]  # a chunk, its unprocessed item twice (once throttled), ...
    assert writes[1]["RequestItems"] == unprocessed
    assert fake.calls[-1][0] == "put_item"  # the applied mark, last
    for write in writes:
        for requests in write["RequestItems"].values():
            keys = [str(r["PutRequest"]["Item"]["ts_post_id"]) for r in requests if "x" not in
                    r["PutRequest"]["Item"]]
            assert len(keys) == len(set(keys))


async def test_dynamodb_gives_up_with_store_unavailable_and_no_applied_mark() -> None:
    fake = FakeDynamoDB([_throttled() for _ in range(10)])
    store = DynamoDBStore(fake, "t-", attempts=3, max_wait_s=0.01)
    with pytest.raises(StoreUnavailable, match="ProvisionedThroughputExceeded"):
        await store.apply([_entries(3)], "s", "9")
    assert [name for name, _ in fake.calls] == ["get_item"] + ["batch_write_item"] * 3


async def test_dynamodb_bad_input_sends_nothing() -> None:
    fake = FakeDynamoDB([])
    store = DynamoDBStore(fake, "t-")
    with pytest.raises(ValueError, match="ts -1"):
        await store.apply([PutUser(User("u", "u", "U")), PutPost(Post("p", "u", "x", -1))], "s", "1")
    with pytest.raises(ValueError, match="not a decimal sequence"):
        await store.apply([PutUser(User("u", "u", "U"))], "s", "x1")
    assert fake.calls == []


async def test_dynamodb_write_benchmark_reports_its_figures(dynalite: Emulator) -> None:
    figures = await measure_dynamodb_ratio(dynalite.endpoint_url, items=60, concurrency=2)
    assert set(figures) == {"dynamodb_items_per_s", "bare_batch_write_items_per_s", "dynamodb_ratio"}
    assert figures["dynamodb_ratio"] == pytest.approx(
        figures["dynamodb_items_per_s"] / figures["bare_batch_write_items_per_s"], rel=0.01
    )


def _write_followers(path: str, batches: int) -> None:
    """In another process: batch i adds follower f{i} of "star" and marks sequence i + 1."""

    async def write() -> None:
        store = SQLiteStore(path)
        for i in range(batches):
            await store.apply([PutFollow(f"f{i:04d}", "star")], "s", str(i + 1))
        await store.close()

    asyncio.run(write())


async def test_sqlite_a_reader_process_never_sees_a_mark_before_its_effects(tmp_path: Path) -> None:
    path = str(tmp_path / "p.db")
    reader = SQLiteStore(path)
    writer = multiprocessing.get_context("spawn").Process(target=_write_followers, args=(path, 300))
    writer.start()
    marks_seen = set()
    while True:
        done = not writer.is_alive()
        mark = int((await reader.applied()).get("s", "0"))
        followers = await reader.follower_ids("star")  # read after the mark: at least as new
        assert len(followers) >= mark
        marks_seen.add(mark)
        if done:
            break
    writer.join()
    assert writer.exitcode == 0
    assert mark == 300
    assert len(marks_seen) > 2  # the reader really ran while the writer wrote
    await reader.close()


class PagedQueries:
    """A client double answering Query in pages of two items (as DynamoDB does past 1 MB)."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.requests: list[dict[str, Any]] = []

    async def query(self, **request: Any) -> dict[str, Any]:
        self.requests.append(dict(request))
        start = int(request.get("ExclusiveStartKey", {}).get("at", {}).get("N", "0"))
        end = min(start + 2, start + request.get("Limit", 2), len(self.ids))
        answer: dict[str, Any] = {"Items": [{"follower_id": {"S": i}} for i in self.ids[start:end]]}
        if request.get("Select") == "COUNT":
            answer = {"Count": end - start}
        if end < len(self.ids):
            answer["LastEvaluatedKey"] = {"at": {"N": str(end)}}
        return answer


async def test_dynamodb_queries_follow_last_evaluated_key() -> None:
    ids = [f"u{i}" for i in range(7)]
    fake = PagedQueries(ids)
    store = DynamoDBStore(fake, "t-")
    assert await store.follower_ids("x") == set(ids)
    assert await store.following_count("x") == 7
    fake.requests.clear()
    assert await store.followers_page("x", 5, None) == ids[:5]
    # The Limit shrinks by what came back; no call is made once the page is full.
    assert [r["Limit"] for r in fake.requests] == [5, 3, 1]


def test_every_projection_key_attribute_is_a_string() -> None:
    # DynamoDBStore's de-duplication of a batch reads keys as strings (`item[key]["S"]`).
    for spec in TABLES:
        assert [spec.type_of(name) for name in spec.key] == ["S"] * len(spec.key), spec.name
