"""SQLiteLog: the Log port in one SQLite file, the embedded default.

Layout: one table, `records(seq INTEGER PRIMARY KEY, shard, partition_key, data)`, and no index,
so an append is one executemany that only ever adds to the end of one b-tree. A shard reader
scans the table in sequence order from where it stopped and keeps its shard's rows: each reader
passes over every shard's rows once, which costs little at a handful of shards and less than the
alternatives cost appends (an index on (shard, seq), or a table per shard, made appends 10-15 %
slower: more pages written per commit). The shard count is stored in `meta` when the file is
created; reopening keeps it. Shards split the 128-bit MD5 hash-key range evenly, as Kinesis's
CreateStream does, with Kinesis's shard ids.

Sequence numbers, like Kinesis's, carry the arrival time: `seq = arrival_ms << 20 | n`. They
grow strictly across the whole log (every batch starts above the largest one stored), so they
grow strictly per shard; AT_TIMESTAMP needs no index (`seq >= ts << 20`), and `arrival_ms` is
`seq >> 20`. If the clock steps back, sequences keep growing and arrival times stay put until
the clock catches up.

Threads: appends run on one writer thread with its own connection, reads on one reader thread
with another, so the event loop never waits on a commit's fsync. One writer process and any
number of reader processes may share the file (WAL mode).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import TypeVar, cast

from streams.log import HASH_KEY_MAX, Appended, LogUnavailable, Position, ReadResult, Record, Shard, hash_key

T = TypeVar("T")

SEQ_SHIFT = 20  # 2**20 sequence numbers per millisecond before the arrival time runs ahead
MAX_KEY_CHARS = 256  # Kinesis's limits, so a log written here could be replayed into Kinesis
MAX_DATA_BYTES = 1024 * 1024
MAX_READ_LIMIT = 10_000
KEY_CACHE_SIZE = 100_000
# wait_for_records checks other processes' commits with a pause that doubles up to this.
FIRST_PAUSE_S = 0.005
MAX_PAUSE_S = 0.1


def shard_id(index: int) -> str:
    return f"shardId-{index:012d}"


def connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    # WAL: readers never block the writer nor each other, across processes.
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and a 202
    # from the API promises the event is durably in the stream. FULL syncs the WAL on every
    # commit, which is one fsync per appended batch.
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class SQLiteLog:
    def __init__(self, path: Path, shard_count: int = 4) -> None:
        if shard_count < 1:
            raise ValueError(f"shard_count must be at least 1, not {shard_count}")
        self.path = path
        try:
            self._conn = connect(path)
            self.shard_count = self._create_or_open(shard_count)
        except sqlite3.Error as exc:  # no such directory, not a database, locked for too long
            raise LogUnavailable(f"cannot open the log at {path}: {exc}") from exc
        self._shards = [
            Shard(
                shard_id(i),
                (),
                ((HASH_KEY_MAX + 1) * i) // self.shard_count,
                ((HASH_KEY_MAX + 1) * (i + 1)) // self.shard_count - 1,
            )
            for i in range(self.shard_count)
        ]
        self._starts = [s.starting_hash_key for s in self._shards]
        self._index_of_key: dict[str, int] = {}  # used on the writer thread only
        self._ids = [s.shard_id for s in self._shards]
        self._index = {s.shard_id: i for i, s in enumerate(self._shards)}
        # `_conn` (used under `_conn_lock`) answers the small synchronous questions (LATEST);
        # each executor thread owns one more connection.
        self._conn_lock = threading.Lock()
        self._writer_conn = connect(path)
        self._reader_conn = connect(path)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-log-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sqlite-log-reader")
        self._waiters: set[asyncio.Future[None]] = set()
        # The reader connection's data_version at the first read since the last wait: a commit
        # after it (from any process) means records may have arrived that those reads missed.
        self._read_version: int | None = None
        self._closed = False

    def _create_or_open(self, shard_count: int) -> int:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('shard_count', ?)", (str(shard_count),))
            (stored,) = conn.execute("SELECT value FROM meta WHERE key = 'shard_count'").fetchone()
            count = int(stored)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, shard INTEGER NOT NULL, "
                "partition_key TEXT NOT NULL, data BLOB NOT NULL)"
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            raise
        return count

    # --- the Log port ------------------------------------------------------------------------
    async def append(self, entries: Sequence[tuple[str, bytes]]) -> list[Appended]:
        self._check_open()
        if not entries:
            return []
        keys, datas = _split(entries)
        appended = await self._run(self._writer, self._append_sync, keys, datas)
        for waiter in list(self._waiters):
            waiter.get_loop().call_soon_threadsafe(_wake, waiter)
        return appended

    async def shards(self) -> list[Shard]:
        return list(self._shards)

    def reader(self, shard_id: str, position: Position) -> SQLiteShardReader:
        self._check_open()
        if shard_id not in self._index:
            raise ValueError(f"no shard {shard_id!r} in {self.path} (shards: {', '.join(self._index)})")
        index = self._index[shard_id]
        match position.kind:
            case "trim_horizon":
                after = 0
            case "latest":
                # Resolved now, as Kinesis resolves LATEST when the iterator is made.
                with self._conn_lock:
                    (last,) = self._conn.execute("SELECT max(seq) FROM records").fetchone()
                after = last or 0
            case "at_sequence":
                after = _parse_sequence(position.sequence) - 1
            case "after_sequence":
                after = _parse_sequence(position.sequence)
            case "at_timestamp":
                if position.timestamp_ms is None:
                    raise ValueError("an at_timestamp position needs timestamp_ms")
                after = (max(position.timestamp_ms, 0) << SEQ_SHIFT) - 1
        return SQLiteShardReader(self, index, after)

    async def wait_for_records(self, timeout_s: float) -> None:
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        baseline = self._read_version
        if baseline is None:
            baseline = await self._run(self._reader, self._data_version_sync)
        self._read_version = None
        woken: asyncio.Future[None] = loop.create_future()
        self._waiters.add(woken)
        try:
            pause = FIRST_PAUSE_S
            while (remaining := deadline - loop.time()) > 0:
                # An append in this process wakes us at once; others show in data_version.
                await asyncio.wait({woken}, timeout=min(pause, remaining))
                if woken.done() or self._closed:
                    return
                if await self._run(self._reader, self._data_version_sync) != baseline:
                    return
                pause = min(pause * 2, MAX_PAUSE_S)
        finally:
            self._waiters.discard(woken)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for waiter in list(self._waiters):  # a consumer waiting for records should stop now
            waiter.get_loop().call_soon_threadsafe(_wake, waiter)
        for executor in (self._writer, self._reader):
            executor.shutdown(wait=True)
        for conn in (self._writer_conn, self._reader_conn, self._conn):
            conn.close()

    # --- used by the shard readers -----------------------------------------------------------
    async def _read(self, index: int, after: int, limit: int) -> tuple[ReadResult, int]:
        self._check_open()
        version, result, scanned = await self._run(self._reader, self._read_sync, index, after, limit)
        if self._read_version is None:
            self._read_version = version
        return result, scanned

    # --- blocking parts, run on the executor threads -----------------------------------------
    def _append_sync(self, keys: tuple[str, ...], datas: tuple[bytes, ...]) -> list[Appended]:
        # Per-entry work is done by C-level iterators (zip, map), as in `_split`.
        cached = self._index_of_key.get
        found = [cached(key) for key in keys]
        indexes = [self._shard_index(key) for key in keys] if None in found else cast(list[int], found)
        conn = self._writer_conn
        try:
            # IMMEDIATE takes the write lock before reading the largest sequence number.
            conn.execute("BEGIN IMMEDIATE")
            try:
                (last,) = conn.execute("SELECT max(seq) FROM records").fetchone()
                base = max((last or 0) + 1, time.time_ns() // 1_000_000 << SEQ_SHIFT)
                sequences = range(base, base + len(keys))
                conn.executemany(
                    "INSERT INTO records VALUES (?, ?, ?, ?)",
                    zip(sequences, indexes, keys, datas, strict=True),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LogUnavailable(f"appending to {self.path} failed: {exc}") from exc
        return list(map(Appended, map(self._ids.__getitem__, indexes), map(str, sequences)))

    def _shard_index(self, key: str) -> int:
        # Partition keys are user ids and repeat: a dict lookup is a tenth of an MD5. Bounded by
        # starting over, which costs one MD5 per key again.
        index = self._index_of_key.get(key)
        if index is None:
            if len(self._index_of_key) >= KEY_CACHE_SIZE:
                self._index_of_key.clear()
            index = self._index_of_key[key] = bisect_right(self._starts, hash_key(key)) - 1
        return index

    def _read_sync(self, index: int, after: int, limit: int) -> tuple[int, ReadResult, int]:
        """The reader connection's data_version (taken first), the shard's records after `after`,
        and how far the read has looked: the next read starts there."""
        conn = self._reader_conn
        try:
            version = self._data_version_sync()
            # One snapshot for both statements: a commit between them would be skipped otherwise.
            conn.execute("BEGIN")
            try:
                (tip,) = conn.execute("SELECT max(seq) FROM records").fetchone()
                rows = conn.execute(
                    "SELECT seq, partition_key, data FROM records"
                    " WHERE seq > ? AND seq <= ? AND shard = ? ORDER BY seq LIMIT ?",
                    (after, tip or 0, index, limit + 1),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LogUnavailable(f"reading {self.path} failed: {exc}") from exc
        millis_behind = 0
        scanned = max(after, tip or 0)  # no record of this shard up to the tip was left unread
        if len(rows) > limit:
            # The first record not returned says how far behind the tip this read is.
            millis_behind = max(0, time.time_ns() // 1_000_000 - (rows[limit][0] >> SEQ_SHIFT))
            del rows[limit:]
            scanned = rows[-1][0]
        sid = self._shards[index].shard_id
        sequences, keys, datas = zip(*rows, strict=True) if rows else ((), (), ())
        # Record is a msgspec Struct: built in C, by a C-level map.
        records = list(map(Record, repeat(sid), map(str, sequences), keys, datas,
                           map(SEQ_SHIFT.__rrshift__, sequences)))
        return version, ReadResult(records, end_of_shard=False, millis_behind=millis_behind), scanned

    def _data_version_sync(self) -> int:
        (version,) = self._reader_conn.execute("PRAGMA data_version").fetchone()
        return int(version)

    async def _run(self, executor: ThreadPoolExecutor, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the log {self.path} is closed")


class SQLiteShardReader:
    def __init__(self, log: SQLiteLog, index: int, after: int) -> None:
        self._log = log
        self._index = index
        self._after = after  # the next read looks at records with seq > _after

    async def read(self, limit: int = 1000) -> ReadResult:
        if not 1 <= limit <= MAX_READ_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_READ_LIMIT}, not {limit}")
        result, self._after = await self._log._read(self._index, self._after, limit)
        return result


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _parse_sequence(sequence: str | None) -> int:
    if sequence is None or not sequence.isascii() or not sequence.isdecimal():
        raise ValueError(f"a sequence number is a decimal string, not {sequence!r}")
    if int(sequence) >= 2**63:  # SQLite's integers; a Kinesis sequence number is not one of ours
        raise ValueError(f"{sequence} is not a sequence number of an SQLite log")
    return int(sequence)


def _split(entries: Sequence[tuple[str, bytes]]) -> tuple[tuple[str, ...], tuple[bytes, ...]]:
    """The keys and the data of a non-empty batch; a bad entry refuses the whole batch, named."""
    # The common case is checked at C speed (map, set, zip): ~3 us per row is all sqlite needs,
    # so a Python loop per entry would be a large part of an append. The loop names the culprit.
    if set(map(type, entries)) == {tuple} and set(map(len, entries)) == {2}:
        keys, datas = zip(*entries, strict=True)
        if (
            set(map(type, keys)) == {str}
            and set(map(type, datas)) == {bytes}
            and min(map(len, keys)) >= 1
            and max(map(len, keys)) <= MAX_KEY_CHARS
            and max(map(len, datas)) <= MAX_DATA_BYTES
        ):
            return keys, datas
    for i, entry in enumerate(entries):
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise TypeError(f"entry {i}: expected a (partition_key, data) pair, got {entry!r:.80}")
        key, data = entry
        if type(key) is not str or not 1 <= len(key) <= MAX_KEY_CHARS:
            raise ValueError(
                f"entry {i}: a partition key is a string of 1 to 256 characters, not {key!r:.80}"
            )
        if type(data) is not bytes:
            raise TypeError(f"entry {i}: data must be bytes, not {type(data).__name__}")
        if len(data) > MAX_DATA_BYTES:
            raise ValueError(f"entry {i}: data of {len(data)} bytes is over the 1 MiB limit")
    raise AssertionError("unreachable: the fast check and the loop disagree")  # pragma: no cover
