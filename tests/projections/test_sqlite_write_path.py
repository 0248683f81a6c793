"""SQLiteStore.apply groups a batch's statements into executemany runs: same state as one by one.

The reference applies every statement of every mutation with its own execute, in the batch's
order (what apply did before it grouped). Random batches over a few keys mix puts, deletes and
trims of the same timelines, posts and edges, so any reordering that matters shows up.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.records import (
    DeleteFollow,
    DeletePost,
    DeleteTimelineEntries,
    Mutation,
    Post,
    PutFollow,
    PutPost,
    PutTimelineEntries,
    PutUser,
    TimelineEntry,
    TrimTimelines,
    User,
)
from projections.sqlite_store import SQLiteStore, _grouped, _statements, table_ddl
from projections.tables import TABLES, sort_key

_ids = st.sampled_from(["a", "b", "c"])
_ts = st.integers(0, 3)
_entry = st.builds(TimelineEntry, _ids, _ts, _ids, _ids)
_mutation: st.SearchStrategy[Mutation] = st.one_of(
    st.builds(PutUser, st.builds(User, _ids, _ids, _ids, st.integers(0, 9), st.booleans())),
    st.builds(PutFollow, _ids, _ids),
    st.builds(DeleteFollow, _ids, _ids),
    st.builds(PutPost, st.builds(Post, _ids, _ids, _ids, _ts)),
    st.builds(DeletePost, _ids, _ids, _ts),
    st.builds(PutTimelineEntries, st.lists(_entry, max_size=6).map(tuple)),
    st.builds(DeleteTimelineEntries, st.lists(st.tuples(_ids, _ts, _ids), max_size=3).map(tuple)),
    st.builds(TrimTimelines, st.lists(_ids, max_size=3).map(tuple), st.integers(0, 3)),
)


def _dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        return {spec.name: conn.execute(f"SELECT * FROM {spec.name} ORDER BY 1, 2").fetchall()
                for spec in TABLES}


def _one_by_one(path: Path, batches: list[list[Mutation]]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for spec in TABLES:
        for ddl in table_ddl(spec):
            conn.execute(ddl)
    for n, batch in enumerate(batches, start=1):
        conn.execute("BEGIN")
        for mutation in batch:
            for _, sql, rows in _statements(mutation):
                for row in rows:
                    conn.execute(sql, row)
        conn.execute("INSERT OR REPLACE INTO applied VALUES ('s', ?, ?)", (str(n), str(n).zfill(129)))
        conn.execute("COMMIT")
    conn.close()


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.lists(_mutation, max_size=12), min_size=1, max_size=3))
async def test_grouped_apply_equals_one_statement_at_a_time(batches: list[list[Mutation]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "grouped.db")
        try:
            for n, batch in enumerate(batches, start=1):
                await store.apply(batch, "s", str(n))
        finally:
            await store.close()
        _one_by_one(Path(tmp) / "reference.db", batches)
        assert _dump(Path(tmp) / "grouped.db") == _dump(Path(tmp) / "reference.db")


async def test_a_push_stores_each_entry_with_its_sort_key(tmp_path: Path) -> None:
    # The push path makes each post's key once; every row must still carry its own post's key.
    entries = tuple(TimelineEntry(f"r{r}", ts, f"p{ts}", "a") for ts in (0, 7, 10**16 - 1) for r in range(3))
    store = SQLiteStore(tmp_path / "p.db")
    await store.apply([PutTimelineEntries(entries)], "s", "1")
    await store.close()
    with sqlite3.connect(tmp_path / "p.db") as conn:
        rows = set(conn.execute("SELECT user_id, ts_post_id, post_id, author_id, ts FROM timelines"))
    assert rows == {(e.user_id, sort_key(e.key), e.post_id, e.author_id, e.ts) for e in entries}


def test_each_group_of_statements_runs_in_key_order_keeping_each_keys_own_order() -> None:
    users = [User("b", "b2", "", 0), User("a", "a1", "", 0), User("b", "b1", "", 0)]
    groups = _grouped([PutFollow("y", "b"), PutFollow("x", "c"), PutFollow("x", "a"),
                       *(PutUser(u) for u in users), TrimTimelines(("d", "c"), 3), TrimTimelines(("c",), 1)])
    rows = {sql.split(" (")[0].split(" WHERE")[0]: rows for sql, rows in groups}
    assert rows["INSERT OR IGNORE INTO followers VALUES"] == [("a", "x"), ("b", "y"), ("c", "x")]
    # By partition only: x's two rows stay in the batch's order.
    assert rows["INSERT OR IGNORE INTO following VALUES"] == [("x", "c"), ("x", "a"), ("y", "b")]
    # Two puts of "b": the later one stays later, whatever its other columns say.
    users_rows = rows["INSERT OR REPLACE INTO users VALUES"]
    assert [r[:2] for r in users_rows] == [("a", "a1"), ("b", "b2"), ("b", "b1")]
    # Trims are sorted by their timeline: "c" to 3 entries and then to 1, as in the batch.
    assert rows["DELETE FROM timelines"] == [("c", 2), ("c", 0), ("d", 2)]
