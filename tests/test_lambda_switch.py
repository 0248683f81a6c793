"""The Lambda path across a `fanline replay` switch: the function follows the pointer, folds with
the version's recorded settings, and the new version misses nothing the function applied to the
old one after the replay's position. On SQLite and on kinesalite + dynalite, through the same code
(`fanline.aws_lambda.LambdaProcessor` as Lambda calls it)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fanline import emulators
from fanline.aws_lambda import LambdaProcessor
from fanline.commands.replay import replay, verify
from fanline.settings import Settings
from fanline.wiring import open_log
from processors.lambda_handler import handle_event
from streams.events import (
    Event,
    FollowData,
    PostCreated,
    PostCreatedData,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
    encode,
    partition_key,
)
from streams.log import Position, Record

EVENTS: list[Event] = [
    UserRegistered(id="e1", ts=1, data=UserRegisteredData("u1", "alice")),
    UserRegistered(id="e2", ts=2, data=UserRegisteredData("u2", "bob")),
    UserFollowed(id="e3", ts=3, data=FollowData(follower_id="u2", followee_id="u1")),
    *(PostCreated(id=f"e{n}", ts=n, data=PostCreatedData(f"p{n}", "u1", f"post {n}")) for n in range(4, 9)),
]


@pytest.fixture(params=["sqlite", "emulators"])
def environment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The function's FANLINE_* environment: one shard, so the records arrive in one order."""
    env = {"FANLINE_DATA_DIR": str(tmp_path), "FANLINE_SHARDS": "1"}
    if request.param == "emulators":
        kinesalite: emulators.Emulator = request.getfixturevalue("kinesalite")
        dynalite: emulators.Emulator = request.getfixturevalue("dynalite")
        name = uuid.uuid4().hex[:10]
        env |= {"FANLINE_BACKEND": "aws", "FANLINE_ENDPOINT_URL": dynalite.endpoint_url,
                "FANLINE_KINESIS_ENDPOINT_URL": kinesalite.endpoint_url,
                "FANLINE_STREAM_NAME": f"lambda-{name}", "FANLINE_TABLE_PREFIX": f"ls{name}-"}
    yield env


def kinesis_event(records: list[Record]) -> dict[str, Any]:
    """The records as a Kinesis event source mapping hands them to the function."""
    return {"Records": [{
        "eventID": f"{r.shard_id}:{r.sequence}", "eventSource": "aws:kinesis",
        "kinesis": {"data": base64.b64encode(r.data).decode(), "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence, "approximateArrivalTimestamp": r.arrival_ms / 1000},
    } for r in records]}


async def appended(settings: Settings, events: list[Event]) -> list[Record]:
    """Append `events` to the stream; answer their records."""
    log = await open_log(settings)
    try:
        await log.append([(partition_key(e), encode(e)) for e in events])
        [shard] = await log.shards()
        return (await log.reader(shard.shard_id, Position.trim_horizon()).read(100)).records[-len(events):]
    finally:
        await log.close()


OK = {"batchItemFailures": []}


def test_after_a_switch_the_new_version_misses_nothing_and_folds_with_its_settings(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The replay moves the deployment to push; the function's environment still says pull.
    settings = Settings.load({"strategy": "push"}, environ=environment)
    for name, value in {**environment, "FANLINE_STRATEGY": "pull"}.items():
        monkeypatch.setenv(name, value)
    warm, cold = LambdaProcessor(), LambdaProcessor()
    try:
        records = asyncio.run(appended(settings, EVENTS))
        assert len(records) == len(EVENTS)
        assert warm(kinesis_event(records[:3])) == OK
        assert warm.version == "" and warm.handler is not None
        assert warm.handler.runner.settings.strategy == "pull"  # no settings recorded for ""

        # An invocation that read the pointer just before the switch applies after it, to "" (the
        # replay already has those records: the mapping is behind it).
        assert warm._loop is not None
        in_flight = warm._loop.run_until_complete(warm._handler())
        switched = asyncio.run(replay(settings))  # r1: the 8 records, positions seeded after them
        assert switched["version"] == "r1"
        assert warm._loop.run_until_complete(handle_event(kinesis_event(records[3:5]), in_flight)) == OK

        # Warm containers follow the pointer, cold ones start on it; r1 skips what it has.
        assert warm(kinesis_event(records[5:7])) == OK
        assert warm.version == "r1" and warm.handler is not None
        assert warm.handler.runner.settings.strategy == "push"  # the version's, not the environment's
        assert cold(kinesis_event(records[7:])) == OK
        assert cold.version == "r1" and warm.handler.gap_records == cold.handler.gap_records == 0
    finally:
        warm.close()
        cold.close()
    figures = asyncio.run(verify(settings))
    assert figures["identical"] is True and figures["events"] == len(EVENTS)


def test_what_the_old_version_got_after_the_replay_is_folded_into_the_new_one(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.load(environ=environment)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    function = LambdaProcessor()
    try:
        records = asyncio.run(appended(settings, EVENTS))
        assert function(kinesis_event(records)) == OK  # version "" has the 8 records
        assert function._loop is not None
        in_flight = function._loop.run_until_complete(function._handler())  # it read the pointer: ""
        assert asyncio.run(replay(settings))["version"] == "r1"  # r1 through the 8, then the switch
        late = asyncio.run(appended(settings, [PostCreated(id=f"x{n}", ts=100 + n, data=PostCreatedData(
            f"x{n}", "u1", "late")) for n in range(3)]))
        # The invocation under way at the switch applies records 9 and 10 to "" (the mapping's
        # position moves past them for every version), then record 11 comes, for r1.
        assert function._loop.run_until_complete(handle_event(kinesis_event(late[:2]), in_flight)) == OK
        assert function(kinesis_event(late[2:])) == OK
        assert function.version == "r1" and function.handler is not None
        r1 = function.handler.runner.store
        late_posts = function._loop.run_until_complete(r1.posts_by_id(["x0", "x1", "x2"]))
        assert set(late_posts) == {"x0", "x1", "x2"}
        assert function.handler.gap_records == 2
        assert function(kinesis_event(late[2:])) == OK  # a redelivery: nothing to look up again
        assert function.handler.gap_records == 2
    finally:
        function.close()
    figures = asyncio.run(verify(settings))  # r1 rebuilt to its own positions: the same
    assert figures["identical"] is True and figures["events"] == len(EVENTS) + 3
