"""Request bodies: read with a size limit, decoded by msgspec into a struct that forbids unknown fields.

Every failure is an ApiError whose message names the field and the reason, as msgspec words it
("Expected `str`, got `int` - at `$.body`"), so a client can fix its request without guessing.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from starlette.requests import Request

from api.errors import ApiError

# Writes are small (a post body is at most 500 characters; a batch of 500 events fits easily).
MAX_BODY_BYTES = 64 * 1024
# A whole /v1/events batch: 500 events of up to ~1 KiB each.
MAX_BATCH_BODY_BYTES = 1024 * 1024

T = TypeVar("T")


async def read_body(request: Request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refused with 413 as soon as it grows past `max_bytes` (never buffered whole)."""
    too_large = ApiError(413, "body_too_large", f"request body is larger than {max_bytes} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def decode_as(raw: bytes, kind: type[T]) -> T:
    if not raw.strip():
        raise ApiError(400, "invalid_body", "request body is empty; expected a JSON object")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc


async def read_json(request: Request, kind: type[T], max_bytes: int = MAX_BODY_BYTES) -> T:
    return decode_as(await read_body(request, max_bytes), kind)
