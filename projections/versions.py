"""Projection versions and the pointer to the active one.

Projections are disposable: `fanline replay` rebuilds them into a new version beside the one
being served and then moves the pointer. A version is a name: "" for the first one (the store
as it always was: `store.db`, tables `<prefix><table>`), then "r1", "r2", ... (`store-r1.db`,
tables `<prefix>r1-<table>`). The pointer says which version the API reads and the processors
write (`active`), which one a replay is building (`building`, so a replay killed part-way
resumes it), which ones are kept until `fanline replay --drop-old` (`old`), and the fold
settings each version was built with (`fold`: version -> `processors.settings.FoldSettings` as a
plain mapping), so the processes that serve a version fold and read it as it was built.

The pointer lives outside every version: a file beside the SQLite stores, replaced atomically
by rename (`FilePointer`), or one item of its own DynamoDB table
(`projections.dynamodb_versions.DynamoDBPointer`). Both pass tests/test_replay_versions.py.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Protocol

import msgspec

_NAME = re.compile(r"^(|r[1-9][0-9]{0,5}|verify)$")


def check_version(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a projection version: {name!r} (expected '', r1, r2, ... or verify)")
    return name


class Versions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    active: str = ""
    building: str | None = None
    old: tuple[str, ...] = ()
    # Plain values (the fields of processors.settings.FoldSettings): projections do not import
    # processors. A version without an entry (the first one, before any replay) has none recorded.
    fold: dict[str, dict[str, str | int]] = {}

    def next_version(self) -> str:
        """The name after every version named here."""
        used = [int(v[1:]) for v in (self.active, self.building or "", *self.old) if v.startswith("r")]
        return f"r{max(used, default=0) + 1}"


class VersionPointer(Protocol):
    async def get(self) -> Versions: ...

    async def set(self, versions: Versions) -> None: ...

    async def close(self) -> None: ...


_decoder = msgspec.json.Decoder(Versions)


def decode_versions(raw: bytes | str) -> Versions:
    versions = _decoder.decode(raw)
    for name in (versions.active, versions.building or "", *versions.old, *versions.fold):
        check_version(name)
    return versions


class FilePointer:
    """The pointer as a small JSON file; absent means the first version, nothing else."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _get(self) -> Versions:
        try:
            return decode_versions(self.path.read_bytes())
        except FileNotFoundError:
            return Versions()

    def _set(self, versions: Versions) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as file:
            file.write(msgspec.json.encode(versions))
            file.flush()
            os.fsync(file.fileno())
        tmp.replace(self.path)  # atomic: a reader sees the old pointer or the new one
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def get(self) -> Versions:
        return await asyncio.to_thread(self._get)

    async def set(self, versions: Versions) -> None:
        await asyncio.to_thread(self._set, versions)

    async def close(self) -> None:
        return None
