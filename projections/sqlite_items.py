"""A SQLite store's items in key order (see projections.items), read on a connection of its own."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from projections.items import Row, columns
from projections.tables import TableSpec


def sqlite_rows(path: Path, spec: TableSpec) -> Iterator[Row]:
    """Streamed, not loaded: a rebuilt 100K world has millions of timeline rows."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sql = f"SELECT {', '.join(columns(spec))} FROM {spec.name} ORDER BY {', '.join(spec.key)}"
        yield from conn.execute(sql)
    finally:
        conn.close()
