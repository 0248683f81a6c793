"""The Archive port: every record of the stream, in order per shard, kept beyond its retention.

Records are stored as gzip-compressed newline-delimited JSON, grouped per shard and hour of
arrival (UTC). One line per record: `{"seq": ..., "key": ..., "ms": ..., "data": <the event>}`;
a record that is not one line of JSON (it would not be an event either) is kept as base64 in
`"b64"` instead, so the archive holds the stream's bytes exactly.

The archive records the last sequence number it holds per shard (`marks()`), written after the
records themselves: a writer that dies between the two leaves nothing a reader sees twice.
`write` ignores records at or below the shard's mark, so a batch delivered again is harmless.

Adapters: `LocalArchive` here (files under a directory, the embedded backend) and
`streams.s3_archive.S3Archive` (one object per written batch, on aiobotocore). Both pass
`tests/streams/archive_contract.py`.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import msgspec

from streams.log import Record, sequence_key

# Lines read back per chunk: big enough that a replay folds thousands of events per batch.
READ_CHUNK = 5000


class _Line(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    seq: str
    key: str
    ms: int
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    b64: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Line)


class ArchiveCorrupt(Exception):
    """A stored line is not an archived record (the archive was changed by hand)."""


def _is_one_json_line(data: bytes) -> bool:
    # Raw is read back without surrounding whitespace, and a line break would split the line.
    if b"\n" in data or b"\r" in data or data != data.strip():
        return False
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError:
        return False
    return True


def encode_lines(records: Sequence[Record]) -> bytes:
    """The records as NDJSON (each line ends with a newline)."""
    lines = []
    for r in records:
        if _is_one_json_line(r.data):
            line = _Line(r.sequence, r.partition_key, r.arrival_ms, data=msgspec.Raw(r.data))
        else:
            line = _Line(r.sequence, r.partition_key, r.arrival_ms, b64=base64.b64encode(r.data).decode())
        lines.append(_encoder.encode(line))
    return b"".join(line + b"\n" for line in lines)


def decode_lines(shard_id: str, text: bytes) -> list[Record]:
    records = []
    for raw in text.splitlines():
        if not raw:
            continue
        try:
            line = _decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise ArchiveCorrupt(f"shard {shard_id}: {exc}: {raw[:200]!r}") from exc
        if not isinstance(line.data, msgspec.UnsetType):
            data = bytes(line.data)
        elif line.b64 is not None:
            data = base64.b64decode(line.b64)
        else:
            raise ArchiveCorrupt(f"shard {shard_id}: a line with neither data nor b64: {raw[:200]!r}")
        records.append(Record(shard_id, line.seq, line.key, data, line.ms))
    return records


def gunzip(raw: bytes) -> bytes:
    """The file's members decompressed, as gzip.decompress does, but reading them as one stream:
    gzip.decompress copies the rest of the file at each member (a write appends one), and an
    hour's file holds hundreds."""
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as file:
        return file.read()


def hour_of(arrival_ms: int) -> str:
    """The hour a record belongs to, as it appears in file and object names."""
    return datetime.fromtimestamp(arrival_ms / 1000, UTC).strftime("%Y-%m-%dT%H")


def chunks(records: Iterator[Record], size: int = READ_CHUNK) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Archive(Protocol):
    async def write(self, shard_id: str, records: Sequence[Record]) -> None:
        """Store the records (in sequence order, one shard's) durably, then move the shard's mark."""
        ...

    async def marks(self) -> dict[str, str]:
        """The last sequence number held, per shard."""
        ...

    def read(self, shard_id: str) -> AsyncIterator[list[Record]]:
        """The shard's records up to its mark, in sequence order, in chunks."""
        ...

    async def close(self) -> None: ...


# --- the local adapter ------------------------------------------------------------------------

MARK = "mark.json"


class LocalArchive:
    """`<root>/<shard_id>/<YYYY-MM-DDTHH>.ndjson.gz`, plus `<root>/<shard_id>/mark.json`.

    A write appends one gzip member to the hour's file (gzip readers read concatenated members
    as one stream), fsyncs it, then replaces the mark (by rename) with the last sequence, the
    file and its size. On its first write to a shard after a crash, the writer cuts whatever
    lies past the mark (a half-written member, files of later hours): the records there come
    again from the consumer, which checkpoints only after `write` returned.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._recovered: set[str] = set()

    def _dir(self, shard_id: str) -> Path:
        if not shard_id or "/" in shard_id or shard_id.startswith("."):
            raise ValueError(f"not a shard id: {shard_id!r}")
        return self.root / shard_id

    def _mark(self, shard_id: str) -> dict[str, object] | None:
        path = self._dir(shard_id) / MARK
        if not path.exists():
            return None
        mark: dict[str, object] = json.loads(path.read_text())
        return mark

    def _files(self, shard_id: str) -> list[Path]:
        directory = self._dir(shard_id)
        return sorted(directory.glob("*.ndjson.gz")) if directory.exists() else []

    def _recover(self, shard_id: str, mark: dict[str, object] | None) -> None:
        """Cut everything past the mark (see the class docstring)."""
        held = str(mark["file"]) if mark else ""
        for path in self._files(shard_id):
            if path.name > held:
                path.unlink()
        if mark:
            with open(self._dir(shard_id) / held, "r+b") as file:
                file.truncate(int(str(mark["size"])))
                os.fsync(file.fileno())
        self._recovered.add(shard_id)

    def _write_sync(self, shard_id: str, records: Sequence[Record]) -> None:
        mark = self._mark(shard_id)
        if shard_id not in self._recovered:
            self._recover(shard_id, mark)
        if mark is not None:
            last = sequence_key(str(mark["sequence"]))
            records = [r for r in records if sequence_key(r.sequence) > last]
        if not records:
            return
        directory = self._dir(shard_id)
        directory.mkdir(parents=True, exist_ok=True)
        # Never go back to an earlier hour (clocks): file order stays sequence order.
        current = str(mark["file"]) if mark else ""
        groups: dict[str, list[Record]] = {}
        for record in records:
            name = max(f"{hour_of(record.arrival_ms)}.ndjson.gz", current)
            groups.setdefault(name, []).append(record)
            current = name
        for name, group in groups.items():
            with open(directory / name, "ab") as file:
                file.write(gzip.compress(encode_lines(group), compresslevel=6))
                file.flush()
                os.fsync(file.fileno())
        size = (directory / current).stat().st_size
        new_mark = {"sequence": records[-1].sequence, "file": current, "size": size}
        tmp = directory / f".{MARK}.tmp"
        tmp.write_text(json.dumps(new_mark))
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())
        tmp.replace(directory / MARK)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def write(self, shard_id: str, records: Sequence[Record]) -> None:
        await asyncio.to_thread(self._write_sync, shard_id, records)

    def _marks_sync(self) -> dict[str, str]:
        if not self.root.exists():
            return {}
        marks = {}
        for directory in sorted(self.root.iterdir()):
            if directory.is_dir() and (mark := self._mark(directory.name)) is not None:
                marks[directory.name] = str(mark["sequence"])
        return marks

    async def marks(self) -> dict[str, str]:
        return await asyncio.to_thread(self._marks_sync)

    def _read_file(self, shard_id: str, path: Path, size: int | None) -> list[Record]:
        with open(path, "rb") as file:
            raw = file.read() if size is None else file.read(size)
        return decode_lines(shard_id, gunzip(raw))

    async def read(self, shard_id: str) -> AsyncIterator[list[Record]]:
        mark = await asyncio.to_thread(self._mark, shard_id)
        if mark is None:
            return
        held, size = str(mark["file"]), int(str(mark["size"]))
        for path in self._files(shard_id):
            if path.name > held:
                break  # past the mark: not (yet) held
            records = await asyncio.to_thread(
                self._read_file, shard_id, path, size if path.name == held else None
            )
            for chunk in chunks(iter(records)):
                yield chunk

    async def close(self) -> None:
        return None
