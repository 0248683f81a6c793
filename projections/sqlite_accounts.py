"""SQLiteAccounts: the AccountStore port in one SQLite file (the embedded default).

Unique keys decide every race (INSERT ... ON CONFLICT DO NOTHING), so several API processes can
share the file. Calls run in a worker thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from projections.account_records import Account, IdempotencyRecord

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    handle TEXT PRIMARY KEY,
    user_id TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""


class SQLiteAccounts:
    def __init__(self, path: Path | str) -> None:
        # isolation_level=None: autocommit; each statement below is its own atomic transaction.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work(self._db)

        return await asyncio.to_thread(locked)

    async def create(self, account: Account) -> bool:
        def insert(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT INTO accounts (handle, user_id, password_hash) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (account.handle, account.user_id, account.password_hash),
            )
            return cursor.rowcount == 1

        return await self._run(insert)

    async def by_handle(self, handle: str) -> Account | None:
        def select(db: sqlite3.Connection) -> Account | None:
            row = db.execute(
                "SELECT handle, user_id, password_hash FROM accounts WHERE handle = ?", (handle,)
            ).fetchone()
            return None if row is None else Account(*row)

        return await self._run(select)

    async def exists(self, user_id: str) -> bool:
        def select(db: sqlite3.Connection) -> bool:
            return db.execute("SELECT 1 FROM accounts WHERE user_id = ?", (user_id,)).fetchone() is not None

        return await self._run(select)

    async def delete(self, handle: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM accounts WHERE handle = ?", (handle,)))

    async def claim(self, record: IdempotencyRecord, stale_ms: int) -> IdempotencyRecord | None:
        def upsert(db: sqlite3.Connection) -> IdempotencyRecord | None:
            # Loop: another process may release the claim between our insert and our select.
            while True:
                # One statement: insert a new key, or take over a pending claim left by a crash.
                cursor = db.execute(
                    "INSERT INTO idempotency (key, fingerprint, created_ms, status, body)"
                    " VALUES (?, ?, ?, 0, x'') ON CONFLICT (key) DO UPDATE SET"
                    " fingerprint = excluded.fingerprint, created_ms = excluded.created_ms"
                    " WHERE status = 0 AND created_ms < ?",
                    (record.key, record.fingerprint, record.created_ms, record.created_ms - stale_ms),
                )
                if cursor.rowcount == 1:
                    return None
                row = db.execute(
                    "SELECT key, fingerprint, created_ms, status, body FROM idempotency WHERE key = ?",
                    (record.key,),
                ).fetchone()
                if row is not None:
                    return IdempotencyRecord(row[0], row[1], row[2], row[3], bytes(row[4]))

        return await self._run(upsert)

    async def complete(self, key: str, status: int, body: bytes) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE idempotency SET status = ?, body = ? WHERE key = ?", (status, body, key)
            )
        )

    async def release(self, key: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM idempotency WHERE key = ? AND status = 0", (key,)))

    async def close(self) -> None:
        await self._run(lambda db: db.close())
