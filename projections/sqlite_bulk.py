"""A whole SQLite store written at once, from rows in key order (a bulk replay's last step).

The file is written beside its final path (`<path>.bulk`) with no journal and no fsync per
transaction, in key order into empty tables (appends at the end of each B-tree, no page split
in the middle, no journal page written twice), then synced and renamed into place. Whoever
opens `path` therefore finds either no file or a complete store, including its applied marks;
a process killed part-way leaves only `<path>.bulk`, which the next write replaces.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from projections.sqlite_store import table_ddl
from projections.tables import TABLES, TableSpec

Row = tuple[Any, ...]
PART_PAGE_SIZE = 65536


def building_path(path: Path) -> Path:
    return path.with_name(path.name + ".bulk")


def has_applied(path: Path) -> bool:
    """Whether the store at `path` exists and has applied anything (a build to resume)."""
    if not path.exists():
        return False
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return bool(conn.execute("SELECT count(*) FROM applied").fetchone()[0] > 0)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return False  # created, never written
        raise
    finally:
        conn.close()


def write_store(path: Path, rows: Callable[[TableSpec], Iterable[Row]], *, cache_mib: int = 64,
                part: bool = False) -> int:
    """Replace the store at `path` (nobody may have it open) with one holding `rows(spec)` for
    every table, each table's rows in its key order. Returns the number of rows written.
    `part`: a scratch file that `merge_stores` reads next (a crash discards it anyway): no
    fsync, and 64 KiB pages (fewer page splits and cells to walk: ~10 % faster both ways)."""

    def insert(conn: sqlite3.Connection, spec: TableSpec) -> int:
        statement = f"INSERT INTO {spec.name} VALUES ({', '.join('?' * len(spec.attributes))})"
        return int(conn.executemany(statement, rows(spec)).rowcount)  # rows streamed, not listed

    return _build(path, insert, cache_mib=cache_mib, durable=not part,
                  page_size=PART_PAGE_SIZE if part else None)


def merge_stores(path: Path, parts: Sequence[Path], timeline_cap: int, *, cache_mib: int = 256) -> int:
    """Replace the store at `path` with the union of the stores `parts` (nobody may have any of
    them open), each timeline trimmed to its newest `timeline_cap` entries. Returns the rows kept.

    The parts are what worker processes folded from disjoint groups of shards. Every item but a
    timeline entry belongs to one shard (its partition-key user's), so the parts never share a
    key; a timeline gets entries from every part, each part's already trimmed to the cap, and
    the newest `timeline_cap` of their union are the newest of all the entries ever put, which
    is what trimming at the end of every batch keeps too. Each table is one INSERT ... SELECT of
    the parts merged in key order (SQLite merges the sorted scans: no sort, appends only), then
    the timelines over the cap lose their oldest entries, a key range each."""
    schemas = [f"part{i}" for i in range(len(parts))]

    def insert(conn: sqlite3.Connection, spec: TableSpec) -> int:
        scans = " UNION ALL ".join(f"SELECT * FROM {schema}.{spec.name}" for schema in schemas)
        conn.execute(f"INSERT INTO main.{spec.name} {scans} ORDER BY {', '.join(spec.key)}")
        if spec.name == "timelines":
            _trim_timelines(conn, schemas, timeline_cap)
        return int(conn.execute(f"SELECT count(*) FROM main.{spec.name}").fetchone()[0])

    def attach(conn: sqlite3.Connection) -> None:
        for schema, part in zip(schemas, parts, strict=True):
            conn.execute(f"ATTACH DATABASE ? AS {schema}", (str(part),))

    return _build(path, insert, cache_mib=cache_mib, durable=True, prepare=attach)


def _trim_timelines(conn: sqlite3.Connection, schemas: list[str], cap: int) -> None:
    """Delete, from each timeline of more than `cap` entries, those older than its cap-th newest
    (the parts' counts say which timelines; their keys say where each one's cut is)."""
    counts = " UNION ALL ".join(
        f"SELECT user_id, count(*) AS n FROM {schema}.timelines GROUP BY user_id" for schema in schemas
    )
    over = conn.execute(f"SELECT user_id, sum(n) FROM ({counts}) GROUP BY user_id HAVING sum(n) > ?",
                        (cap,)).fetchall()
    # The cut is the oldest entry kept: `total - cap` entries come before it (fewer steps than
    # counting `cap` down from the newest, in a timeline just over the cap).
    cut = "SELECT ts_post_id FROM main.timelines WHERE user_id = ? ORDER BY ts_post_id LIMIT 1 OFFSET ?"
    cuts = [(user_id, conn.execute(cut, (user_id, total - cap)).fetchone()[0]) for user_id, total in over]
    conn.executemany("DELETE FROM main.timelines WHERE user_id = ? AND ts_post_id < ?", cuts)


def _build(path: Path, insert: Callable[[sqlite3.Connection, TableSpec], int], *, cache_mib: int,
           durable: bool, page_size: int | None = None,
           prepare: Callable[[sqlite3.Connection], None] = lambda conn: None) -> int:
    """Write a new store beside `path` (`insert` fills each table after its DDL), then rename it
    into place: whoever opens `path` finds no file or a complete store."""
    building = building_path(path)
    _unlink(building, "", "-journal", "-wal", "-shm")
    written = 0
    conn = sqlite3.connect(building, isolation_level=None)
    try:
        if page_size is not None:
            conn.execute(f"PRAGMA page_size = {int(page_size)}")
        conn.execute("PRAGMA journal_mode = OFF")  # nothing to roll back to: a failure discards the file
        conn.execute("PRAGMA synchronous = OFF")  # one fsync of the whole file, below
        conn.execute(f"PRAGMA cache_size = -{int(cache_mib) * 1024}")
        prepare(conn)
        conn.execute("BEGIN")
        for spec in TABLES:
            for ddl in table_ddl(spec):
                conn.execute(ddl)
            written += insert(conn, spec)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")  # kept in the file: what SQLiteStore opens with
    finally:
        conn.close()
    if durable:
        _fsync(building)
    # A WAL of an earlier, empty store at `path` must not be replayed into the new file.
    _unlink(path, "-wal", "-shm", "-journal")
    os.replace(building, path)
    if durable:
        _fsync(path.parent)
    return written


def sync_store(path: Path) -> None:
    """Make everything committed to the store at `path` durable (after writes with synchronous
    OFF): its WAL checkpointed into the file with fsyncs, then the file fsynced."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = FULL")
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError(f"{path}: a reader kept the WAL from being checkpointed")
    finally:
        conn.close()
    _fsync(path)


def _unlink(path: Path, *suffixes: str) -> None:
    for suffix in suffixes:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
