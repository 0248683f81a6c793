"""The Lambda path on the documented Kinesis event shape, with the real Runner on MemoryStore (and
once end to end on dynalite): what is dead-lettered is not reported, what is not durable is."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from fanline import emulators
from fanline.aws_lambda import LambdaProcessor
from processors.fold import fold_event
from processors.lambda_handler import NotAKinesisEvent, batches, handle_event, parse_event
from processors.runner import Runner
from processors.settings import FoldSettings
from processors.state import BatchState
from projections.memory_store import MemoryStore
from projections.records import DeadLetter, Mutation
from projections.store import StoreUnavailable
from streams.delivery import Delivered, Undecodable
from streams.events import (
    Event,
    PostCreated,
    PostCreatedData,
    UserRegistered,
    UserRegisteredData,
    encode,
)

SHARD_A = "shardId-000000000000"
SHARD_B = "shardId-000000000001"
# Real Kinesis sequence numbers are this long; they compare as numbers, not strings.
BASE = 49590338271490256608559692538361571095921575989136588898
ARRIVAL_S = 1_700_000_000.25


def registered(user_id: str) -> UserRegistered:
    return UserRegistered(id=f"e-{user_id}", ts=1, data=UserRegisteredData(user_id, f"h_{user_id}"))


def posted(post_id: str, author_id: str) -> PostCreated:
    return PostCreated(id=f"e-{post_id}", ts=2, data=PostCreatedData(post_id, author_id, "hello"))


def record(shard: str, n: int, data: Event | bytes | str, key: str = "k") -> dict[str, Any]:
    """One record as Lambda's Kinesis event source mapping sends it."""
    if isinstance(data, str):
        payload = data  # given as is: not necessarily base64
    else:
        payload = base64.b64encode(encode(data) if not isinstance(data, bytes) else data).decode()
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": key,
            "sequenceNumber": str(BASE + n),
            "data": payload,
            "approximateArrivalTimestamp": ARRIVAL_S,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{BASE + n}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/fanline-lambda-processor",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/fanline-events",
    }


def seq(n: int) -> str:
    return str(BASE + n)


def failures(*ns: int) -> dict[str, list[dict[str, str]]]:
    return {"batchItemFailures": [{"itemIdentifier": seq(n)} for n in ns]}


class RefusingStore(MemoryStore):
    """Refuses to apply one shard's batches, or to keep dead letters, like a throttled table."""

    def __init__(self, refuse_shard: str | None = None, refuse_dead_letters: bool = False) -> None:
        super().__init__()
        self.refuse_shard = refuse_shard
        self.refuse_dead_letters = refuse_dead_letters

    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        if shard_id == self.refuse_shard:
            raise StoreUnavailable("throttled")
        await super().apply(mutations, shard_id, sequence)

    async def put_dead_letter(self, letter: DeadLetter) -> None:
        if self.refuse_dead_letters:
            raise StoreUnavailable("throttled")
        await super().put_dead_letter(letter)


async def test_a_clean_event_is_folded_per_shard_and_reports_nothing() -> None:
    store = MemoryStore()
    event = {"Records": [
        record(SHARD_A, 1, registered("u1")), record(SHARD_B, 2, registered("u2")),
        record(SHARD_A, 3, posted("p1", "u1")),
    ]}
    assert await handle_event(event, Runner(store).handle) == failures()
    assert set(await store.users(["u1", "u2"])) == {"u1", "u2"}
    assert [p.post_id for p in await store.recent_posts("u1", 10)] == ["p1"]
    assert await store.applied() == {SHARD_A: seq(3), SHARD_B: seq(2)}


async def test_undecodable_records_are_dead_lettered_and_not_reported() -> None:
    store = MemoryStore()
    event = {"Records": [
        record(SHARD_A, 1, registered("u1")),
        record(SHARD_A, 2, "%%% not base64 %%%"),
        record(SHARD_A, 3, b'{"type": "PostCreated", "oops"'),
        record(SHARD_A, 4, registered("u4")),
    ]}
    assert await handle_event(event, Runner(store).handle) == failures()
    letters = {letter.sequence: letter for letter in await store.dead_letters(10)}
    assert set(letters) == {seq(2), seq(3)}
    assert "base64" in letters[seq(2)].error
    assert letters[seq(3)].payload == b'{"type": "PostCreated", "oops"'
    # The shard moved on past them.
    assert set(await store.users(["u1", "u4"])) == {"u1", "u4"}
    assert await store.applied() == {SHARD_A: seq(4)}


async def test_a_fold_that_keeps_failing_is_dead_lettered_and_not_reported() -> None:
    def fold(state: BatchState, event: Event, settings: FoldSettings) -> list[Mutation]:
        if isinstance(event, UserRegistered) and event.data.user_id == "bad":
            raise RuntimeError("a bug in the fold")
        return fold_event(state, event, settings)

    store = MemoryStore()
    event = {"Records": [record(SHARD_A, n, registered(u)) for n, u in enumerate(["u0", "bad", "u2"])]}
    assert await handle_event(event, Runner(store, fold=fold).handle) == failures()
    [letter] = await store.dead_letters(10)
    assert (letter.sequence, letter.attempts) == (seq(1), 3)
    assert "a bug in the fold" in letter.error
    assert set(await store.users(["u0", "bad", "u2"])) == {"u0", "u2"}


async def test_a_store_that_refuses_reports_that_shard_from_its_first_record() -> None:
    store = RefusingStore(refuse_shard=SHARD_A)
    event = {"Records": [
        record(SHARD_A, 1, registered("a1")), record(SHARD_B, 2, registered("b2")),
        record(SHARD_A, 3, registered("a3")), record(SHARD_B, 4, registered("b4")),
        record(SHARD_A, 5, registered("a5")),
    ]}
    runner = Runner(store)
    assert await handle_event(event, runner.handle) == failures(1, 3, 5)
    assert await store.applied() == {SHARD_B: seq(4)}
    assert await store.users(["a1", "a3", "a5"]) == {}
    # Lambda retries shard A from its first reported record; now the store takes it.
    store.refuse_shard = None
    retry = {"Records": [r for r in event["Records"] if r["eventID"].startswith(SHARD_A)]}
    assert await handle_event(retry, runner.handle) == failures()
    assert await store.applied() == {SHARD_A: seq(5), SHARD_B: seq(4)}
    assert set(await store.users(["a1", "a3", "a5", "b2", "b4"])) == {"a1", "a3", "a5", "b2", "b4"}


async def test_a_dead_letter_that_cannot_be_kept_is_reported() -> None:
    store = RefusingStore(refuse_dead_letters=True)
    event = {"Records": [record(SHARD_A, 1, registered("u1")), record(SHARD_A, 2, "not base64!")]}
    assert await handle_event(event, Runner(store).handle) == failures(1, 2)
    assert await store.applied() == {}


async def test_an_event_of_another_shape_is_refused_and_changes_nothing() -> None:
    store = MemoryStore()
    bad_events: list[dict[str, Any]] = [
        {"Records": [{"eventID": f"{SHARD_A}:{seq(1)}"}]},  # no kinesis part
        {"Records": [{**record(SHARD_A, 1, registered("u1")), "eventID": "no-colon"}]},
        {"records": []},  # an SQS-like or hand-made event
    ]
    for bad in bad_events:
        with pytest.raises(NotAKinesisEvent, match="not a Kinesis"):
            await handle_event(bad, Runner(store).handle)
    assert await store.applied() == {}
    with pytest.raises(NotAKinesisEvent, match=r"\$\.Records\[0\]"):
        parse_event(bad_events[0])


def test_batches_keep_sequence_order_within_a_shard_and_carry_the_lag() -> None:
    event = parse_event({"Records": [
        record(SHARD_A, 30, registered("u3")), record(SHARD_A, 10, registered("u1")),
        record(SHARD_B, 20, "bad"),
    ]})
    [a, b] = batches(event, now_ms=int(ARRIVAL_S * 1000) + 1500)
    assert (a.shard_id, [i.sequence for i in a.items]) == (SHARD_A, [seq(10), seq(30)])
    assert all(isinstance(i, Delivered) for i in a.items) and a.millis_behind == 1500
    assert b.shard_id == SHARD_B and isinstance(b.items[0], Undecodable)


def test_the_lambda_entry_point_folds_into_dynamodb(
    kinesalite: emulators.Emulator, dynalite: emulators.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fanline.aws_lambda.handler as Lambda calls it: settings from FANLINE_*, store on dynalite,
    kept warm between invocations. (A plain function: the handler runs its own event loop.)
    The stream (kinesalite, empty) is where it would read what a new version lacks."""
    name = uuid.uuid4().hex[:8]
    monkeypatch.setenv("FANLINE_BACKEND", "aws")
    monkeypatch.setenv("FANLINE_ENDPOINT_URL", dynalite.endpoint_url)
    monkeypatch.setenv("FANLINE_KINESIS_ENDPOINT_URL", kinesalite.endpoint_url)
    monkeypatch.setenv("FANLINE_STREAM_NAME", f"lambda-{name}")
    monkeypatch.setenv("FANLINE_TABLE_PREFIX", f"lambda{name}-")
    handler = LambdaProcessor()
    try:
        first = {"Records": [record(SHARD_A, 1, registered("u1")), record(SHARD_A, 2, "bad")]}
        assert handler(first, None) == failures()
        second = {"Records": [record(SHARD_A, 3, posted("p1", "u1"))]}
        assert handler(second, None) == failures()
        assert handler.handler is not None and handler._loop is not None
        store = handler.handler.runner.store
        assert handler._loop.run_until_complete(store.applied()) == {SHARD_A: seq(3)}
        posts = handler._loop.run_until_complete(store.recent_posts("u1", 10))
        assert [p.post_id for p in posts] == ["p1"]
        [letter] = handler._loop.run_until_complete(store.dead_letters(10))
        assert letter.sequence == seq(2)
    finally:
        handler.close()
