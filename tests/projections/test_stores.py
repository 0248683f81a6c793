"""The Store contract, run against every adapter."""

from __future__ import annotations

import pytest

from projections.memory_store import MemoryStore
from projections.store import Store
from tests.projections.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Store:
        return MemoryStore()
