"""An adapter for the storage experiment: rows and bytes per table of an embedded SQLite store.

Bytes are the pages SQLite's `dbstat` table gives each table and its indexes (what the file
really holds, with B-tree overhead), read through a read-only connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def table_sizes(path: Path) -> dict[str, dict[str, int]]:
    """{table: {"items": rows, "bytes": bytes of the table and its indexes}} for every table."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master"
                                  " WHERE type IN ('table', 'index')"))
        sizes = {table: {"items": 0, "bytes": 0} for table in tables}
        for name, pages in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            if table in sizes:
                sizes[table]["bytes"] += int(pages)
        for table in tables:
            # Table names come from sqlite_master itself, not from input.
            (count,) = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            sizes[table]["items"] = int(count)
        return sizes
    finally:
        conn.close()
