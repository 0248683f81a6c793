"""Replay on the AWS path: kinesalite, dynalite and moto's S3 (the archive). A history processed
live, replayed into new tables while events arrive, then processed on: a rebuild to the same
positions is identical; `--drop-old` keeps the first version's tables (Terraform's) and leaves
the pointer's list of old versions empty."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanline import emulators, versions
from fanline.commands.replay import drop_old_versions, replay, verify
from fanline.settings import Settings
from fanline.wiring import open_log
from projections.dynamodb_store import DynamoDBStore
from tests.moto_s3 import start_s3
from tests.replay_helpers import THRESHOLD, Processors, append, caught_up, history, more_posts, wait_for

USERS = 30


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server, url = start_s3()
    yield url
    server.stop()


async def test_replay_on_the_emulators(
    tmp_path: Path, kinesalite: emulators.Emulator, dynalite: emulators.Emulator, s3_endpoint: str
) -> None:
    name = uuid.uuid4().hex[:10]
    settings = Settings.load({
        "data_dir": tmp_path, "backend": "aws", "endpoint_url": dynalite.endpoint_url,
        "kinesis_endpoint_url": kinesalite.endpoint_url, "stream_name": f"replay-{name}",
        "table_prefix": f"rp{name}-", "archive_bucket": f"archive-{name}", "s3_endpoint_url": s3_endpoint,
        "shards": 2, "celebrity_threshold": THRESHOLD,
    }, environ={})
    log = await open_log(settings)
    processors = Processors(settings, log)
    try:
        events = history(USERS)
        await append(log, events)
        await wait_for(lambda: caught_up(settings, log), 50)
        # (tests/test_replay.py also verifies before the switch; here it would double the table work)
        arriving = asyncio.create_task(append(log, more_posts(USERS, "during", 20)))
        switched = await replay(settings)
        await arriving
        assert switched["version"] == "r1"
        await append(log, more_posts(USERS, "after", 10, start_ts=10**15))
        await wait_for(lambda: caught_up(settings, log), 50)
    finally:
        await processors.stop()
    again = await verify(settings)
    assert again["identical"] is True, again
    assert again["events"] == len(events) + len(more_posts(USERS, "d", 20)) + len(more_posts(USERS, "a", 10))

    assert await drop_old_versions(settings) == ([], [""])
    r1 = await versions.open_store_version(settings, "r1")
    assert isinstance(r1, DynamoDBStore)
    mine: set[str] = set()
    async for page in r1.client.get_paginator("list_tables").paginate():
        mine |= {t for t in page["TableNames"] if t.startswith(f"rp{name}-")}
    assert {f"rp{name}-r1-timelines", f"rp{name}-timelines", f"rp{name}-leases"} <= mine
    assert f"rp{name}-projection_versions" in mine
    pointer = await versions.open_pointer(settings)
    assert (await pointer.get()).old == ()
    await pointer.close()
    assert await drop_old_versions(settings) == ([], [])
    with pytest.raises(ValueError, match="Terraform"):
        await versions.drop_version(settings, "")
    await r1.close()
    await log.close()
