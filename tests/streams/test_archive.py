"""Archive adapters: the local files and S3 (moto's server, started once, stopped with the session)."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from streams.archive import Archive, LocalArchive, gunzip
from streams.s3_archive import S3Archive
from tests.moto_s3 import start_s3
from tests.streams.archive_contract import ArchiveContract, everything, record


class TestLocalArchive(ArchiveContract):
    @pytest.fixture
    def archive(self, tmp_path: Path) -> Archive:
        return LocalArchive(tmp_path / "archive")

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Callable[[], Archive]:
        return lambda: LocalArchive(tmp_path / "archive")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server, url = start_s3()
    yield url
    server.stop()


class TestS3Archive(ArchiveContract):
    @pytest.fixture
    async def archive(self, s3_endpoint: str) -> AsyncIterator[Archive]:
        self.bucket = f"archive-{uuid.uuid4().hex[:12]}"
        archive = await S3Archive.connect(self.bucket, endpoint_url=s3_endpoint)
        await archive.ensure_bucket()
        yield archive
        await archive.close()

    @pytest.fixture
    def reopen(self, s3_endpoint: str) -> Callable[[], Archive]:
        class Lazy:
            """An archive connected on first use (the fixture itself is not async)."""

            def __init__(self, bucket: str) -> None:
                self.bucket, self.inner = bucket, None

            def __getattr__(self, name: str) -> object:
                async def call(*args: object) -> object:
                    if self.inner is None:
                        self.inner = await S3Archive.connect(self.bucket, endpoint_url=s3_endpoint)
                    return await getattr(self.inner, name)(*args)

                if name == "read":
                    async def read(shard: str) -> AsyncIterator[list[object]]:
                        if self.inner is None:
                            self.inner = await S3Archive.connect(self.bucket, endpoint_url=s3_endpoint)
                        async for chunk in self.inner.read(shard):
                            yield chunk
                    return read
                return call

        return lambda: Lazy(self.bucket)  # type: ignore[return-value]


def test_local_layout_is_gzip_ndjson_per_shard_and_hour(tmp_path: Path) -> None:
    import asyncio

    archive = LocalArchive(tmp_path)
    asyncio.run(archive.write("s0", [record("s0", 1), record("s0", 2, 1_767_225_600_000 + 3_600_000)]))
    files = sorted(p.name for p in (tmp_path / "s0").iterdir())
    assert files == ["2026-01-01T00.ndjson.gz", "2026-01-01T01.ndjson.gz", "mark.json"]
    lines = gzip.decompress((tmp_path / "s0" / files[0]).read_bytes()).decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"seq": "1", "key": "user-1", "ms": 1_767_225_600_000, "data": {"n": 1}}
    ]


async def test_local_cuts_what_a_crash_left_past_the_mark(tmp_path: Path) -> None:
    archive = LocalArchive(tmp_path)
    await archive.write("s0", [record("s0", 1)])
    hour_file = next((tmp_path / "s0").glob("*.ndjson.gz"))
    # A crash mid-append: half a gzip member after the mark, and a later hour's file.
    with open(hour_file, "ab") as file:
        file.write(gzip.compress(b'{"seq":"2","key":"k","ms":1,"data":{}}\n')[:15])
    (tmp_path / "s0" / "2099-01-01T00.ndjson.gz").write_bytes(b"garbage")
    assert [r.sequence for r in await everything(archive, "s0")] == ["1"]
    again = LocalArchive(tmp_path)  # the restarted writer
    await again.write("s0", [record("s0", 2), record("s0", 3)])
    assert [r.sequence for r in await everything(again, "s0")] == ["1", "2", "3"]
    assert not (tmp_path / "s0" / "2099-01-01T00.ndjson.gz").exists()


def test_gunzip_reads_every_member_and_refuses_a_cut_one() -> None:
    members = [b"one\n", b"two\n" * 1000, b"", b"three\n"]
    raw = b"".join(gzip.compress(m) for m in members)
    assert gunzip(raw) == b"".join(members)
    with pytest.raises(EOFError):
        gunzip(raw[:-5])
