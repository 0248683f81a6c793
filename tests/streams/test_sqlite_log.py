"""SQLiteLog: the Log contract, durability, a reader in another process, bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streams.log import Log
from streams.sqlite_log import SQLiteLog
from tests.streams.log_contract import LogContract


class TestSQLiteLog(LogContract):
    @pytest.fixture
    async def log(self, tmp_path: Path) -> AsyncIterator[Log]:
        log = SQLiteLog(tmp_path / "log.sqlite", shard_count=4)
        yield log
        await log.close()
