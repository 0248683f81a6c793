"""Another process on the same SQLiteLog file, for tests/streams/test_sqlite_log.py.

`python -m tests.streams.sqlite_log_peer read PATH N`: read every shard from the start, waiting
for records, until N came; print them as JSON lines (shard, sequence, data) and exit.
`python -m tests.streams.sqlite_log_peer append PATH N`: append N records for key "peer",
print "appended", then die without closing the log (as a crash would).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from streams.log import Position
from streams.sqlite_log import SQLiteLog


async def read(path: Path, n: int) -> None:
    log = SQLiteLog(path)
    readers = [log.reader(s.shard_id, Position.trim_horizon()) for s in await log.shards()]
    seen = 0
    while seen < n:
        got = 0
        for reader in readers:
            for record in (await reader.read()).records:
                print(json.dumps([record.shard_id, record.sequence, record.data.decode()]), flush=True)
                got += 1
        seen += got
        if not got:
            await log.wait_for_records(timeout_s=1.0)
    await log.close()


async def append(path: Path, n: int) -> None:
    log = SQLiteLog(path)
    await log.append([("peer", f"peer-{i}".encode()) for i in range(n)])
    print("appended", flush=True)
    os._exit(0)  # no close: what was acknowledged must already be durable


if __name__ == "__main__":
    command, path, count = sys.argv[1:]
    asyncio.run({"read": read, "append": append}[command](Path(path), int(count)))
