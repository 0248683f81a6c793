"""SQLiteStore: the Store port in one SQLite file (the embedded default).

One writer process (the runner) and several reader processes (the API) share the file in WAL
mode: readers see committed transactions only and never block the writer. Each `apply` is one
transaction that includes the applied mark, so a batch is there entirely or not at all.

The schema is built from `projections.tables`; every table is keyed as in DynamoDB (a WITHOUT
ROWID primary key), so each page is a range scan of that key.

Threads. Writes (and the few unbounded reads) run on one dedicated thread per store, with its
own connection, so the event loop never waits on a commit's fsync or the writer lock. Bounded
reads (a page, a handful of ids) run inline on the event loop with a second, read-only
connection: in WAL mode a reader never waits for the writer, and an indexed read of a page
(~50-200 us) costs less than the hop to a thread and back, which also queues behind the
writer's commits. The read connection never waits on a lock: in the rare cases WAL readers
get SQLITE_BUSY (recovery after a crash, a WAL restart), the read is retried on the thread.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections.abc import Callable, Collection, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from projections import sqlite_stamps as stamps
from projections.records import (
    DeadLetter,
    DeleteFollow,
    DeletePost,
    DeleteTimelineEntries,
    FeedPost,
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
from projections.tables import TABLES, AttributeType, TableSpec, sequence_position, sort_key

R = TypeVar("R")

SQLITE_TYPES: dict[AttributeType, str] = {"S": "TEXT", "N": "INTEGER", "B": "BLOB", "BOOL": "INTEGER"}

# (table, sql, rows): one statement run once per row.
Group = tuple[str, str, list[Sequence[Any]]]


def table_ddl(spec: TableSpec) -> list[str]:
    """CREATE TABLE (and CREATE INDEX for each global index) mirroring the DynamoDB layout."""
    columns = ", ".join(f"{name} {SQLITE_TYPES[kind]} NOT NULL" for name, kind in spec.attributes)
    ddl = [
        f"CREATE TABLE IF NOT EXISTS {spec.name} ({columns}, PRIMARY KEY ({', '.join(spec.key)}))"
        " WITHOUT ROWID"
    ]
    for index in spec.indexes:
        keys = [index.partition_key] + ([index.sort_key] if index.sort_key else [])
        ddl.append(f"CREATE INDEX IF NOT EXISTS {index.name} ON {spec.name} ({', '.join(keys)})")
    return ddl


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


# --- mutations as SQL ------------------------------------------------------------------------

# Each statement touches one table, and no statement reads another table: the only read is a
# trim's subquery on timelines. So a batch's final state depends only on each table's own
# statements in their order, which lets `_grouped` fold them into one executemany per run.
_PUT_TIMELINE = "INSERT OR REPLACE INTO timelines VALUES (?, ?, ?, ?, ?)"
_TRIM_TIMELINE = (
    # Delete everything older than the cap-th newest entry (nothing when there are fewer).
    "DELETE FROM timelines WHERE user_id = ?1 AND ts_post_id < ("
    " SELECT ts_post_id FROM timelines WHERE user_id = ?1"
    " ORDER BY ts_post_id DESC LIMIT 1 OFFSET ?2)"
)
_EMPTY_TIMELINE = "DELETE FROM timelines WHERE user_id = ?"
_USER_ID, _TS, _POST_ID, _AUTHOR_ID = (attrgetter(name) for name in ("user_id", "ts", "post_id", "author_id"))
_POST_KEY = attrgetter("ts", "post_id")
_PARTITION = itemgetter(0)


def _timeline_rows(entries: Sequence[TimelineEntry]) -> list[Sequence[Any]]:
    """The rows of a push: a post has hundreds of entries, so its sort key is made (and checked)
    once, and the columns are gathered by C loops (map, zip) rather than per entry in Python."""
    keys = list(map(_POST_KEY, entries))
    key_of = {key: sort_key(key) for key in set(keys)}
    return list(zip(map(_USER_ID, entries), map(key_of.__getitem__, keys), map(_POST_ID, entries),
                    map(_AUTHOR_ID, entries), map(_TS, entries), strict=True))


def _statements(mutation: Mutation) -> list[Group]:
    """The SQL for one mutation, as (table, sql, rows); computing it first validates it before
    the transaction starts."""
    match mutation:
        case PutUser(u):
            return [("users", "INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?)",
                     [(u.user_id, u.handle, u.display_name, u.followers, int(u.celebrity))])]
        case PutFollow(follower, followee):
            return [("followers", "INSERT OR IGNORE INTO followers VALUES (?, ?)", [(followee, follower)]),
                    ("following", "INSERT OR IGNORE INTO following VALUES (?, ?)", [(follower, followee)])]
        case DeleteFollow(follower, followee):
            return [("followers", "DELETE FROM followers WHERE user_id = ? AND follower_id = ?",
                     [(followee, follower)]),
                    ("following", "DELETE FROM following WHERE user_id = ? AND followee_id = ?",
                     [(follower, followee)])]
        case PutPost(p):
            return [("posts", "INSERT OR REPLACE INTO posts VALUES (?, ?, ?, ?, ?)",
                     [(p.author_id, sort_key(p.key), p.post_id, p.body, p.ts)]),
                    ("posts_by_id", "INSERT OR REPLACE INTO posts_by_id VALUES (?, ?, ?, ?)",
                     [(p.post_id, p.author_id, p.body, p.ts)])]
        case DeletePost(author_id, post_id, ts):
            return [("posts", "DELETE FROM posts WHERE author_id = ? AND ts_post_id = ?",
                     [(author_id, sort_key((ts, post_id)))]),
                    ("posts_by_id", "DELETE FROM posts_by_id WHERE post_id = ?", [(post_id,)])]
        case PutTimelineEntries(entries):
            return [("timelines", _PUT_TIMELINE, _timeline_rows(entries))]
        case DeleteTimelineEntries(keys):
            return [("timelines", "DELETE FROM timelines WHERE user_id = ? AND ts_post_id = ?",
                     [(user_id, sort_key((ts, post_id))) for user_id, ts, post_id in keys])]
        case TrimTimelines(user_ids, cap):
            if cap < 0:
                raise ValueError(f"timeline cap {cap} is negative")
            if cap == 0:
                return [("timelines", _EMPTY_TIMELINE, [(user_id,) for user_id in user_ids])]
            return [("timelines", _TRIM_TIMELINE, [(user_id, cap - 1) for user_id in user_ids])]
    raise TypeError(f"not a mutation: {mutation!r}")


def _grouped(mutations: Sequence[Mutation]) -> list[tuple[str, list[Sequence[Any]]]]:
    """The batch's statements as (sql, rows) to run with executemany, in an order that keeps
    every table's statements in the batch's order (see above): a statement joins its table's
    latest group when that group has the same SQL. A push of 100 000 entries and its trims are
    then two executemany calls instead of 100 000 executes.

    Each group's rows are then sorted (stably) by their first parameter, the partition key of
    the rows they touch: SQLite writes a B-tree faster in key order (fewer pages per row) than
    scattered (a world's follows come grouped by followee, so their `following` rows land all
    over that table). Within a group every statement touches only rows of its own key (an
    insert or delete by primary key, a trim of one timeline), so statements on different keys
    commute, and a stable sort keeps the order of each key's own statements."""
    groups: list[tuple[str, list[Sequence[Any]]]] = []
    latest: dict[str, tuple[str, list[Sequence[Any]]]] = {}
    for mutation in mutations:
        for table, sql, rows in _statements(mutation):
            group = latest.get(table)
            if group is not None and group[0] == sql:
                group[1].extend(rows)
            elif rows:
                group = latest[table] = (sql, rows)  # a fresh list from _statements
                groups.append(group)
    for _, rows in groups:
        rows.sort(key=_PARTITION)  # a string key, no tuple per row; ~linear on sorted runs
    return groups


_SET_APPLIED = (
    "INSERT INTO applied VALUES (?, ?, ?) ON CONFLICT (shard_id) DO UPDATE"
    " SET sequence = excluded.sequence, position = excluded.position"
    " WHERE excluded.position > applied.position"
)

# The read queries the API depends on; tests check their plans are index range scans.
TIMELINE_PAGE = (
    "SELECT user_id, ts, post_id, author_id FROM timelines"
    " WHERE user_id = ? AND ts_post_id < ? ORDER BY ts_post_id DESC LIMIT ?"
)
POSTS_PAGE = (
    "SELECT post_id, author_id, body, ts FROM posts WHERE author_id = ? AND ts_post_id < ?"
    " ORDER BY ts_post_id DESC LIMIT ?"
)
FOLLOWING_COUNT = "SELECT count(*) FROM following WHERE user_id = ?"

# The pull merge in one query. First a lower bound: the `limit` authors with the newest posts
# (before the cursor) have at least `limit` posts at or after the limit-th of their newest keys,
# so nothing older can be in the answer. Then a range scan per author above that bound.
POSTS_OF_AUTHORS = """
WITH authors(author_id) AS (SELECT DISTINCT value FROM json_each(?1)),
newest(k) AS (
    SELECT (SELECT ts_post_id FROM posts p WHERE p.author_id = a.author_id AND p.ts_post_id < ?2
            ORDER BY ts_post_id DESC LIMIT 1) AS k
    FROM authors a),
bound(k) AS (SELECT k FROM newest WHERE k IS NOT NULL ORDER BY k DESC LIMIT 1 OFFSET ?3 - 1)
SELECT post_id, author_id, body, ts FROM posts
WHERE author_id IN (SELECT author_id FROM authors) AND ts_post_id < ?2
  AND ts_post_id >= coalesce((SELECT k FROM bound), '')
ORDER BY ts_post_id DESC LIMIT ?3
"""

# A timeline page in one statement each: entries joined with their posts (an entry whose post is
# gone drops out, and the page fills from older entries) and their authors' handles.
TIMELINE_FEED = (
    "SELECT p.post_id, p.author_id, coalesce(u.handle, ''), p.body, p.ts FROM timelines t"
    " JOIN posts_by_id p ON p.post_id = t.post_id LEFT JOIN users u ON u.user_id = p.author_id"
    " WHERE t.user_id = ? AND t.ts_post_id < ? ORDER BY t.ts_post_id DESC LIMIT ?"
)
AUTHORS_FEED = (
    f"SELECT page.post_id, page.author_id, coalesce(u.handle, ''), page.body, page.ts"
    f" FROM ({POSTS_OF_AUTHORS}) page LEFT JOIN users u ON u.user_id = page.author_id"
    f" ORDER BY page.ts DESC, page.post_id DESC"
)
CELEBRITY_FOLLOWEES = (
    "SELECT f.followee_id FROM following f JOIN users u ON u.user_id = f.followee_id"
    " WHERE f.user_id = ? AND u.celebrity ORDER BY f.followee_id"
)
# The hybrid page in one statement: the pushed timeline's newest live entries, and for each
# celebrity the user follows the posts among its `limit` newest (its keys found in its range,
# then each post read by key), their union (UNION also drops a post both pushed and pulled: the
# rows are equal) cut to `limit`, then the handles. One statement rather than three saves half
# the SQLite time of a page (measured on the bench world).
HYBRID_FEED = """
WITH pushed AS (
    SELECT t.ts_post_id AS k, p.post_id, p.author_id, p.body, p.ts FROM timelines t
    JOIN posts_by_id p ON p.post_id = t.post_id
    WHERE t.user_id = ?1 AND t.ts_post_id < ?2 ORDER BY t.ts_post_id DESC LIMIT ?3),
pulled AS (
    SELECT p.ts_post_id AS k, p.post_id, p.author_id, p.body, p.ts
    FROM following f JOIN users c ON c.user_id = f.followee_id
    JOIN posts p ON p.author_id = f.followee_id
    WHERE f.user_id = ?1 AND c.celebrity AND p.ts_post_id IN (
        SELECT q.ts_post_id FROM posts q WHERE q.author_id = f.followee_id AND q.ts_post_id < ?2
        ORDER BY q.ts_post_id DESC LIMIT ?3)),
page AS (SELECT * FROM pushed UNION SELECT * FROM pulled ORDER BY k DESC LIMIT ?3)
SELECT page.post_id, page.author_id, coalesce(u.handle, ''), page.body, page.ts
FROM page LEFT JOIN users u ON u.user_id = page.author_id ORDER BY page.k DESC
"""
# Greater than every sort key: "before nothing" is "before this".
_NO_BOUND = "\U0010ffff"


def _before(before: SortKey | None) -> str:
    return _NO_BOUND if before is None else sort_key(before)


class SQLiteStore:
    def __init__(
        self, path: str | Path, *, attempts: int = 8, cache_mib: int = 0, durable: bool = True,
        stamps_max_age_s: float = 0.001,
    ) -> None:
        """`cache_mib`: the writer's page cache (SQLite's default is 2 MiB); a replay gives it
        hundreds, as its fan-out writes land all over a timelines table of millions of rows.
        `durable=False` (a replay's version, read by nobody until the switch): commits are not
        fsynced (synchronous OFF). A killed process loses nothing (the OS has the writes); a
        power cut may lose the last batches, or more. The replay syncs the file before the
        switch (projections.sqlite_bulk.sync_store).
        `stamps_max_age_s`: how long `feed_stamp` trusts the stamps it read without asking the
        file whether it changed (see there)."""
        self._path = str(path)
        self._cache_mib = cache_mib
        self._durable = durable
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._retrying = Retrying(
            retry=retry_if_exception(_is_busy),
            wait=wait_random_exponential(multiplier=0.01, max=0.5),
            stop=stop_after_attempt(attempts),
            reraise=True,
        )
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        # feed_stamp's memory of the stamps it read, valid while the file is unchanged; the
        # token tells this store's stamps from another's (a version switch).
        self._token = object()
        self._stamps_max_age_s = stamps_max_age_s
        self._stamps_checked = -math.inf  # time.monotonic() of the last data_version asked
        self._stamps_version: int | None = None
        self._author_stamps: dict[str, int] = {}
        self._feed_stamps: dict[str, tuple[tuple[str, ...], Hashable]] = {}  # user -> (authors, stamp)
        # Open and create the schema on the store's own thread, where every later call runs.
        try:
            self._executor.submit(self._retrying, self._open).result()
            self._reader = _open_reader(self._path)
        except sqlite3.OperationalError as exc:
            self._executor.submit(self._close_writer).result()
            self._executor.shutdown()
            raise StoreUnavailable(f"sqlite store {self._path}: {exc}") from exc

    def _open(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 200")
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed batch survives a power cut, so the checkpoint never runs ahead.
            conn.execute(f"PRAGMA synchronous = {'FULL' if self._durable else 'OFF'}")
            if self._cache_mib > 0:
                conn.execute(f"PRAGMA cache_size = -{int(self._cache_mib) * 1024}")
            with _transaction(conn):
                for spec in TABLES:
                    for ddl in table_ddl(spec):
                        conn.execute(ddl)
                for ddl in stamps.DDL:
                    conn.execute(ddl)
        except BaseException:
            conn.close()  # a retry opens a fresh connection
            raise
        self._conn = conn

    async def _run(self, work: Callable[[sqlite3.Connection], R]) -> R:
        def call() -> R:
            if self._conn is None:
                raise StoreUnavailable("the store is closed")
            conn = self._conn
            return self._retrying(work, conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite store {self._path}: {exc}") from exc

    async def _rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return await self._run(lambda conn: conn.execute(sql, params).fetchall())

    async def _read(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """A bounded read, inline on the read connection (see the module's docstring)."""
        if self._reader is None:
            raise StoreUnavailable("the store is closed")
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise StoreUnavailable(f"sqlite store {self._path}: {exc}") from exc
        return await self._rows(sql, *params)  # busy: wait and retry off the event loop

    def _close_writer(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- writes ----------------------------------------------------------------------------
    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        groups = _grouped(mutations)
        mark = (shard_id, sequence, sequence_position(sequence))

        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                # Fenced by the mark, under the write lock (Store.apply): a batch of a worker whose
                # lease moved must not land after the new owner's later batches (it would undo them).
                found = conn.execute("SELECT position FROM applied WHERE shard_id = ?", mark[:1]).fetchone()
                if found is not None and found[0] > mark[2]:
                    return
                stamps.bump(conn, mutations)
                for sql, rows in groups:
                    conn.executemany(sql, rows)
                conn.execute(_SET_APPLIED, mark)  # last, in the same transaction

        await self._run(write)

    async def applied(self) -> dict[str, str]:
        return dict(await self._read("SELECT shard_id, sequence FROM applied"))

    # --- state for the folds ---------------------------------------------------------------
    async def users(self, user_ids: Collection[str]) -> dict[str, User]:
        rows = await self._read(
            "SELECT * FROM users WHERE user_id IN (SELECT value FROM json_each(?))",
            json.dumps(list(user_ids)),
        )
        return {r[0]: User(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows}

    async def follower_ids(self, user_id: str) -> set[str]:
        rows = await self._rows("SELECT follower_id FROM followers WHERE user_id = ?", user_id)
        return {r[0] for r in rows}

    async def recent_posts(self, author_id: str, limit: int) -> list[Post]:
        return await self.posts_page(author_id, limit, None)

    # --- reads -----------------------------------------------------------------------------
    async def following_count(self, user_id: str) -> int:
        rows = await self._read(FOLLOWING_COUNT, user_id)
        return int(rows[0][0])

    async def followers_page(self, user_id: str, limit: int, after: str | None) -> list[str]:
        return await self._id_page("followers", "follower_id", user_id, limit, after)

    async def following_page(self, user_id: str, limit: int, after: str | None) -> list[str]:
        return await self._id_page("following", "followee_id", user_id, limit, after)

    async def _id_page(
        self, table: str, column: str, user_id: str, limit: int, after: str | None
    ) -> list[str]:
        rows = await self._read(
            f"SELECT {column} FROM {table} WHERE user_id = ? AND {column} > ?"
            f" ORDER BY {column} LIMIT ?",
            user_id, after or "", limit,
        )
        return [r[0] for r in rows]

    async def following_ids(self, user_id: str) -> list[str]:
        rows = await self._read(
            "SELECT followee_id FROM following WHERE user_id = ? ORDER BY followee_id", user_id
        )
        return [r[0] for r in rows]

    async def posts_page(self, author_id: str, limit: int, before: SortKey | None) -> list[Post]:
        rows = await self._read(
            POSTS_PAGE, author_id, _before(before), limit,
        )
        return [Post(*r) for r in rows]

    async def posts_of_authors(
        self, author_ids: Collection[str], limit: int, before: SortKey | None
    ) -> list[Post]:
        if limit <= 0 or not author_ids:
            return []
        rows = await self._read(
            POSTS_OF_AUTHORS, json.dumps(list(author_ids)), _before(before), limit
        )
        return [Post(*r) for r in rows]

    async def posts_by_id(self, post_ids: Collection[str]) -> dict[str, Post]:
        rows = await self._read(
            "SELECT post_id, author_id, body, ts FROM posts_by_id"
            " WHERE post_id IN (SELECT value FROM json_each(?))",
            json.dumps(list(post_ids)),
        )
        return {r[0]: Post(*r) for r in rows}

    async def timeline_page(
        self, user_id: str, limit: int, before: SortKey | None
    ) -> list[TimelineEntry]:
        rows = await self._read(
            TIMELINE_PAGE, user_id, _before(before), limit,
        )
        return [TimelineEntry(*r) for r in rows]

    # --- page reads, one statement each -----------------------------------------------------
    async def celebrity_followees(self, user_id: str) -> list[str]:
        return [r[0] for r in await self._read(CELEBRITY_FOLLOWEES, user_id)]

    async def timeline_feed(self, user_id: str, limit: int, before: SortKey | None) -> list[FeedPost]:
        if limit <= 0:
            return []
        return [FeedPost(*r) for r in await self._read(TIMELINE_FEED, user_id, _before(before), limit)]

    async def authors_feed(
        self, author_ids: Collection[str], limit: int, before: SortKey | None
    ) -> list[FeedPost]:
        if limit <= 0 or not author_ids:
            return []
        rows = await self._read(AUTHORS_FEED, json.dumps(list(author_ids)), _before(before), limit)
        return [FeedPost(*r) for r in rows]

    async def hybrid_feed(self, user_id: str, limit: int, before: SortKey | None) -> list[FeedPost]:
        if limit <= 0:
            return []
        return [FeedPost(*r) for r in await self._read(HYBRID_FEED, user_id, _before(before), limit)]

    async def feed_stamp(self, user_id: str, authors: Sequence[str]) -> Hashable | None:
        """See projections.sqlite_stamps. Stamps read since the file last changed (`PRAGMA
        data_version`: any other connection's commit changes it) are kept, and whether it changed
        is asked at most once per `stamps_max_age_s` (1 ms): any SQLite statement costs a page
        read tens of microseconds in the server (a WAL read transaction), as much as the rest of
        a cached page. So a stamp may be up to 1 ms late; api.timeline_cache reads afresh when a
        reader asks for its own write (`consistent_after`). None when the read connection is busy."""
        reader = self._reader
        if reader is None:
            raise StoreUnavailable("the store is closed")
        try:
            now = time.monotonic()
            if now - self._stamps_checked >= self._stamps_max_age_s:
                self._stamps_checked = now
                version = reader.execute("PRAGMA data_version").fetchone()[0]
                if version != self._stamps_version:
                    self._stamps_version = version
                    self._author_stamps.clear()
                    self._feed_stamps.clear()
            known = self._feed_stamps.get(user_id)
            if known is not None and known[0] == authors:
                return known[1]
            stamp = (self._token, _stamp_row(reader, stamps.READER_STAMP, user_id),
                     *[self._author_stamp(reader, a) for a in (stamps.EPOCH, *authors)])
            self._feed_stamps[user_id] = (tuple(authors), stamp)
            return stamp
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise StoreUnavailable(f"sqlite store {self._path}: {exc}") from exc
            return None

    def _author_stamp(self, reader: sqlite3.Connection, author_id: str) -> int:
        # Shared by every reader who pulls this author: read once per change of the file.
        stamp = self._author_stamps.get(author_id)
        if stamp is None:
            stamp = self._author_stamps[author_id] = _stamp_row(reader, stamps.AUTHOR_STAMP, author_id)
        return stamp

    # --- dead letters ----------------------------------------------------------------------
    async def put_dead_letter(self, letter: DeadLetter) -> None:
        row = (letter.shard_id, letter.sequence, letter.error, letter.payload, letter.attempts,
               letter.failed_at_ms)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?)", row)

        await self._run(write)

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        rows = await self._rows(
            "SELECT * FROM dead_letters ORDER BY shard_id, length(sequence), sequence LIMIT ?", limit
        )
        return [DeadLetter(*r) for r in rows]

    async def delete_dead_letter(self, shard_id: str, sequence: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM dead_letters WHERE shard_id = ? AND sequence = ?", (shard_id, sequence)
            )

        await self._run(write)

    # --- lifecycle -------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._rows("SELECT count(*) FROM applied")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_writer)
        self._executor.shutdown(wait=True)


def _stamp_row(reader: sqlite3.Connection, sql: str, user_id: str) -> int:
    row = reader.execute(sql, (user_id,)).fetchone()
    return 0 if row is None else int(row[0])


def _open_reader(path: str) -> sqlite3.Connection:
    # timeout=0: a busy read fails at once (and is retried on the thread) rather than blocking
    # the event loop. query_only: this connection can never write, whatever it is asked.
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    try:
        reader.execute("PRAGMA query_only = ON")
    except BaseException:
        reader.close()
        raise
    return reader


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the writer lock is taken up front)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            try:
                self._conn.execute("COMMIT")
                return
            except BaseException:
                # Leave no transaction open behind a failed COMMIT, so a retry starts clean.
                self._conn.execute("ROLLBACK")
                raise
        self._conn.execute("ROLLBACK")
