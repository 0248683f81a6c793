"""Read-your-writes: consistency tokens and the bounded wait of a `consistent_after` read.

A write answers with a token naming the shard and sequence number its event got in the log.
A read that passes the token waits until the store's applied mark for that shard has reached
the sequence (the runner writes the mark last, after the batch's mutations), or until the
deadline, and then answers anyway, flagged stale.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from projections.store import Store

# The sleep between two looks at the applied marks: short enough that a read waits about one
# processor batch, long enough that a waiting read costs the store next to nothing.
POLL_S = 0.005


class BadConsistencyToken(ValueError):
    """A string that is not a token this API gave out."""


@dataclass(frozen=True, slots=True)
class ConsistencyToken:
    shard_id: str
    sequence: str


def encode_token(shard_id: str, sequence: str) -> str:
    """Opaque to clients: urlsafe base64 of `shard_id:sequence`, without padding."""
    raw = f"{shard_id}:{sequence}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(token: str) -> ConsistencyToken:
    try:
        padded = token + "=" * (-len(token) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise BadConsistencyToken("not a consistency token from a write answer") from exc
    shard_id, sep, sequence = raw.rpartition(":")
    if not sep or not shard_id or not sequence.isdigit():
        raise BadConsistencyToken("not a consistency token from a write answer")
    return ConsistencyToken(shard_id, sequence)


# What the read routes are given: await it with a token; True means "gave up, answer stale".
ConsistencyCheck = Callable[[str], Awaitable[bool]]


class ConsistencyWaiter:
    """`await waiter(token)` waits until the store reflects the token's write; True if it gave up.

    Applied marks only move forward, so any marks seen earlier that already cover a token prove
    the write is reflected: a read whose write is long processed costs no store call at all.
    Waiting reads share one `store.applied()` call at a time, so a crowd of them costs the store
    one small read per poll interval, not one each.
    """

    def __init__(self, store: Store, wait_ms: int, poll_s: float = POLL_S) -> None:
        self._store = store
        self._wait_s = wait_ms / 1000
        self._poll_s = poll_s
        self._known: dict[str, int] = {}
        self._fetching: asyncio.Future[dict[str, int]] | None = None

    async def __call__(self, token: str) -> bool:
        wanted = decode_token(token)
        target = int(wanted.sequence)
        if self._known.get(wanted.shard_id, -1) >= target:
            return False
        deadline = time.monotonic() + self._wait_s
        while True:
            if (await self._fresh()).get(wanted.shard_id, -1) >= target:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            await asyncio.sleep(min(self._poll_s, remaining))

    async def _fresh(self) -> dict[str, int]:
        """The marks as of now: joins the call in flight, if any, else makes one."""
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch())
        # shield: a waiter that is cancelled (its client left) does not cancel the others' call.
        return await asyncio.shield(self._fetching)

    async def _fetch(self) -> dict[str, int]:
        try:
            marks = {shard: int(sequence) for shard, sequence in (await self._store.applied()).items()}
            self._known = marks
            return marks
        finally:
            self._fetching = None
