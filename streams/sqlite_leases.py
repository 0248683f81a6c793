"""The LeaseStore port on an SQLite file: the embedded default, shared by processes on one machine.

Every change is one conditional UPDATE (`WHERE counter = ? AND owner IS ?`) that bumps the
counter, so two workers racing for a lease cannot both win: SQLite serialises writers, and the
loser's WHERE no longer matches. All calls run on one private thread so the event loop never
blocks on the file lock another process holds.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from streams.lease_rules import check_checkpoint, check_held, check_owner
from streams.leases import TRIM_HORIZON, Lease
from streams.log import Shard

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    shard_id   TEXT PRIMARY KEY,
    owner      TEXT,
    counter    INTEGER NOT NULL,
    checkpoint TEXT NOT NULL,
    parent_ids TEXT NOT NULL  -- a JSON array of shard ids
)
"""
_COLUMNS = "shard_id, owner, counter, checkpoint, parent_ids"
Row = tuple[str, str | None, int, str, str]


def _lease(row: Row) -> Lease:
    shard_id, owner, counter, checkpoint, parent_ids = row
    return Lease(shard_id, owner, counter, checkpoint, tuple(json.loads(parent_ids)))


class SQLiteLeaseStore:
    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        # One thread owns the connection: calls are serialised and never block the event loop.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-leases")
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        # WAL: readers (list) never wait for a writer in another process.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._closed = False

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, self._db)

    async def ensure(self, shards: Sequence[Shard]) -> None:
        rows = [(s.shard_id, 0, TRIM_HORIZON, json.dumps(list(s.parent_ids))) for s in shards]

        def insert(db: sqlite3.Connection) -> None:
            # One transaction: a child's lease never exists without its parents' (when listed together).
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT OR IGNORE INTO leases VALUES (?, NULL, ?, ?, ?)", rows
                )

        await self._run(insert)

    async def list(self) -> list[Lease]:
        def select(db: sqlite3.Connection) -> list[Row]:
            return db.execute(f"SELECT {_COLUMNS} FROM leases ORDER BY shard_id").fetchall()

        return [_lease(row) for row in await self._run(select)]

    async def _update(self, lease: Lease, assignments: str, params: tuple[object, ...]) -> Lease | None:
        """Apply `assignments` and bump the counter, only if the row is still as `lease` says."""
        sql = (
            f"UPDATE leases SET {assignments}, counter = counter + 1"
            f" WHERE shard_id = ? AND counter = ? AND owner IS ? RETURNING {_COLUMNS}"
        )

        def update(db: sqlite3.Connection) -> Row | None:
            where = (lease.shard_id, lease.counter, lease.owner)
            row: Row | None = db.execute(sql, (*params, *where)).fetchone()
            return row

        row = await self._run(update)
        return None if row is None else _lease(row)

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        check_owner(owner)
        return await self._update(lease, "owner = ?", (owner,))

    async def renew(self, lease: Lease) -> Lease | None:
        check_held(lease)
        return await self._update(lease, "owner = owner", ())

    async def checkpoint(self, lease: Lease, checkpoint: str) -> Lease | None:
        check_held(lease)
        check_checkpoint(checkpoint)
        return await self._update(lease, "checkpoint = ?", (checkpoint,))

    async def release(self, lease: Lease) -> None:
        check_held(lease)
        await self._update(lease, "owner = NULL", ())

    async def close(self) -> None:
        if self._closed:  # closing twice is harmless, as for the other adapters
            return
        self._closed = True
        await self._run(lambda db: db.close())
        self._thread.shutdown(wait=True)
