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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from projections.sqlite_store import table_ddl
from projections.tables import TABLES, TableSpec

Row = tuple[Any, ...]


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


def write_store(path: Path, rows: Callable[[TableSpec], Iterable[Row]], *, cache_mib: int = 64) -> int:
    """Replace the store at `path` (nobody may have it open) with one holding `rows(spec)` for
    every table, each table's rows in its key order. Returns the number of rows written."""
    building = building_path(path)
    _unlink(building, "", "-journal", "-wal", "-shm")
    written = 0
    conn = sqlite3.connect(building, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")  # nothing to roll back to: a failure discards the file
        conn.execute("PRAGMA synchronous = OFF")  # one fsync of the whole file, below
        conn.execute(f"PRAGMA cache_size = -{int(cache_mib) * 1024}")
        conn.execute("BEGIN")
        for spec in TABLES:
            for ddl in table_ddl(spec):
                conn.execute(ddl)
            insert = f"INSERT INTO {spec.name} VALUES ({', '.join('?' * len(spec.attributes))})"
            written += conn.executemany(insert, rows(spec)).rowcount  # rows streamed, not listed
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")  # kept in the file: what SQLiteStore opens with
    finally:
        conn.close()
    _fsync(building)
    # A WAL of an earlier, empty store at `path` must not be replayed into the new file.
    _unlink(path, "-wal", "-shm", "-journal")
    os.replace(building, path)
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
