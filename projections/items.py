"""Every item of a projection version, table by table, in key order: what `fanline replay
--verify` compares. Rows are tuples of the table's attributes in `projections.tables` order
(keys first), without the attributes that record when something happened rather than what
(a dead letter's `failed_at_ms`). Adapters: `projections.sqlite_items`, `projections.dynamodb_items`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from projections.tables import TABLES, TableSpec

Row = tuple[Any, ...]
# Not compared: the clock of the process that wrote them.
UNCOMPARED = {"failed_at_ms"}
COMPARED_TABLES: tuple[TableSpec, ...] = TABLES


def columns(spec: TableSpec) -> list[str]:
    return [name for name, _ in spec.attributes if name not in UNCOMPARED]


def differences(
    spec: TableSpec, left: Iterator[Row], right: Iterator[Row], limit: int
) -> tuple[int, list[str]]:
    """Walk two key-ordered row streams; the number of rows that differ and the first `limit` of them."""
    width = len(spec.key)
    found: list[str] = []
    count = 0
    sentinel: Row = ()
    a, b = next(left, sentinel), next(right, sentinel)
    while a or b:
        if a and b and a[:width] == b[:width]:
            if a != b:
                count += 1
                if len(found) < limit:
                    found.append(f"{spec.name} {a[:width]}: live {a[width:]} != rebuilt {b[width:]}")
            a, b = next(left, sentinel), next(right, sentinel)
        elif b == sentinel or (a and a[:width] < b[:width]):
            count += 1
            if len(found) < limit:
                found.append(f"{spec.name} {a[:width]}: only in live {a[width:]}")
            a = next(left, sentinel)
        else:
            count += 1
            if len(found) < limit:
                found.append(f"{spec.name} {b[:width]}: only in rebuilt {b[width:]}")
            b = next(right, sentinel)
    return count, found
