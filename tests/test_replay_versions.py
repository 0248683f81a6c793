"""The projection-version pointer (file and DynamoDB item) and the Store that follows it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from fanline import emulators
from projections.dynamodb_versions import DynamoDBPointer
from projections.memory_store import MemoryStore
from projections.records import PutUser, User
from projections.store import Store
from projections.switching import SwitchingStore
from projections.timeline import Strategy
from projections.versions import FilePointer, VersionPointer, Versions, check_version


class PointerContract:
    """Not collected itself; one subclass per adapter gives `pointer`."""

    async def test_absent_means_the_first_version(self, pointer: VersionPointer) -> None:
        assert await pointer.get() == Versions(active="", building=None, old=())

    async def test_set_then_get(self, pointer: VersionPointer) -> None:
        fold: dict[str, dict[str, str | int]] = {"r2": {"strategy": "push", "celebrity_threshold": 3}}
        versions = Versions(active="r2", building="r3", old=("", "r1"), fold=fold)
        await pointer.set(versions)
        assert await pointer.get() == versions
        assert versions.next_version() == "r4"


class TestFilePointer(PointerContract):
    @pytest.fixture
    def pointer(self, tmp_path: Path) -> VersionPointer:
        return FilePointer(tmp_path / "projections.json")

    async def test_a_hand_edited_bad_version_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "p.json").write_text('{"active": "../x"}')
        with pytest.raises(ValueError, match="not a projection version"):
            await FilePointer(tmp_path / "p.json").get()
        (tmp_path / "q.json").write_text('{"active": "", "fold": {"../x": {}}}')
        with pytest.raises(ValueError, match="not a projection version"):
            await FilePointer(tmp_path / "q.json").get()


class TestDynamoDBPointer(PointerContract):
    @pytest.fixture
    async def pointer(self, dynalite: emulators.Emulator) -> AsyncIterator[VersionPointer]:
        pointer = await DynamoDBPointer.connect(endpoint_url=dynalite.endpoint_url,
                                                table_prefix=f"v{uuid.uuid4().hex[:8]}-")
        await pointer.ensure_table()
        yield pointer
        await pointer.close()

    async def test_no_table_means_the_first_version(self, dynalite: emulators.Emulator) -> None:
        pointer = await DynamoDBPointer.connect(endpoint_url=dynalite.endpoint_url, table_prefix="missing-")
        assert await pointer.get() == Versions()
        await pointer.close()


def test_version_names() -> None:
    assert check_version("r12") == "r12" and check_version("") == ""
    for bad in ("r0", "x", "r1/..", "R1"):
        with pytest.raises(ValueError):
            check_version(bad)
    assert Versions().next_version() == "r1"
    assert msgspec.json.decode(msgspec.json.encode(Versions(old=("",))), type=Versions).old == ("",)


async def test_switching_store_follows_the_pointer_within_its_interval(tmp_path: Path) -> None:
    pointer = FilePointer(tmp_path / "p.json")
    stores = {"": MemoryStore(), "r1": MemoryStore()}
    await stores["r1"].apply([PutUser(User("u1", "in_r1", ""))], "s", "1")
    opened: list[str] = []

    async def open_version(versions: Versions) -> tuple[Store, Strategy]:
        opened.append(versions.active)
        return stores[versions.active], "push" if versions.active else "hybrid"

    store = await SwitchingStore.open(pointer, open_version, check_every_s=0.2)
    assert await store.users(["u1"]) == {} and store.strategy == "hybrid"
    await pointer.set(Versions(active="r1", old=("",)))
    assert await store.users(["u1"]) == {}  # not looked at again yet
    await asyncio.sleep(0.25)
    found = await asyncio.gather(*(store.users(["u1"]) for _ in range(5)))
    assert all(set(f) == {"u1"} for f in found)
    assert opened == ["", "r1"] and store.version == "r1" and store.strategy == "push"
    await store.close()
