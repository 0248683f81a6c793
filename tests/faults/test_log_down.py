"""The log refusing appends (Kinesis on kinesalite, throttling injected around the real client): the
write API answers 503 with Retry-After and appends nothing; after recovery, the request retried with
its Idempotency-Key appends exactly once, and a further retry replays the answer, appending nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from api.auth import Tokens
from fanline.emulators import Emulator
from projections.memory_accounts import MemoryAccounts
from projections.memory_store import MemoryStore
from streams.events import decode
from streams.kinesis_log import KinesisLog
from streams.log import Position
from tests.api.conftest import CHEAP_HASHER, SECRET
from tests.faults.test_store_down import Throttling


async def _events_in(log: KinesisLog) -> list[str]:
    ids: list[str] = []
    for shard in await log.shards():
        reader = log.reader(shard.shard_id, Position.trim_horizon())
        for _ in range(3):  # kinesalite may answer a first read empty
            result = await reader.read(1000)
            ids += [decode(r.data).id for r in result.records]
    return ids


async def test_a_refusing_log_is_503_with_retry_after_then_an_idempotent_retry_appends_once(
    kinesalite: Emulator, tmp_path: Path
) -> None:
    log = await KinesisLog.connect(f"down-{uuid.uuid4().hex[:8]}", endpoint_url=kinesalite.endpoint_url,
                                   max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05)
    await log.ensure_stream(2)
    throttling = Throttling(log.client)
    log.client = throttling
    app = create_app(log, MemoryStore(), MemoryAccounts(), secret=SECRET, hasher=CHEAP_HASHER, linger_s=0.0)
    producer = {"Authorization": f"Bearer {Tokens(SECRET).issue('loader', 'producer')}"}
    batch: dict[str, Any] = {"events": [
        {"type": "UserRegistered", "data": {"user_id": f"d{n}", "handle": f"down_{n}"}} for n in range(50)]}
    batch_headers = {**producer, "Idempotency-Key": "batch-1"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            throttling.refusing = True
            answers = [
                await client.post("/v1/posts", json={"body": "hi", "actor_id": "u1"},
                                  headers={**producer, "Idempotency-Key": "post-1"}),
                await client.post("/v1/events", json=batch, headers=batch_headers),
            ]
            for answer in answers:
                assert answer.status_code == 503, answer.text
                assert answer.headers["Retry-After"] == "1"
                assert answer.json()["error"]["code"] == "log_unavailable"
            assert throttling.refused >= 6  # each append retried (max_attempts) before giving up
            throttling.refusing = False
            assert await _events_in(log) == []  # nothing half-way

            post = await client.post("/v1/posts", json={"body": "hi", "actor_id": "u1"},
                                     headers={**producer, "Idempotency-Key": "post-1"})
            events = await client.post("/v1/events", json=batch, headers=batch_headers)
            assert (post.status_code, events.status_code) == (202, 202)
            stored = await _events_in(log)
            assert sorted(stored) == sorted([post.json()["event_id"], *events.json()["event_ids"]])
            again = await client.post("/v1/events", json=batch, headers=batch_headers)
            assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
            assert again.json() == events.json()
            assert len(await _events_in(log)) == len(stored)  # exactly once
    finally:
        await app.state.batcher.close()
        await log.close()
