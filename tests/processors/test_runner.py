"""The Runner: exactly-once effects under redelivery, dead letters, bounded fold retries, metrics."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from processors.fold import fold_event
from processors.metrics import Metrics
from processors.runner import Runner, coalesce
from processors.settings import FoldSettings
from processors.state import BatchState
from projections.memory_store import MemoryStore
from projections.records import (
    DeadLetter,
    DeleteTimelineEntries,
    Mutation,
    Post,
    PutPost,
    PutTimelineEntries,
    PutUser,
    TimelineEntry,
    TrimTimelines,
    User,
)
from projections.timeline import TimelineReader
from streams.delivery import Batch, Delivered, Undecodable
from streams.events import Event, encode
from tests.processors.builders import OneShard, follow, post, register, unfollow
from tests.processors.histories import Crash, CrashingStore


class RecordingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.applies: list[tuple[list[Mutation], str, str]] = []
        self.applied_reads = 0

    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        self.applies.append((list(mutations), shard_id, sequence))
        await super().apply(mutations, shard_id, sequence)

    async def applied(self) -> dict[str, str]:
        self.applied_reads += 1
        return await super().applied()


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_one_apply_per_batch_with_the_last_sequence_and_one_trim() -> None:
    store = RecordingStore()
    shard = OneShard(Runner(store, FoldSettings("push")))
    await shard.send(register("a"), follow("b", "a"), follow("c", "a"), post("a", "p1"), post("a", "p2"))
    assert len(store.applies) == 1
    mutations, shard_id, sequence = store.applies[0]
    assert (shard_id, sequence) == ("s0", "5")
    trims = [m for m in mutations if isinstance(m, TrimTimelines)]
    assert trims == [TrimTimelines(("a", "b", "c"), 800)]
    # The user records come last, after the trim; everything else before it.
    at = mutations.index(trims[0])
    assert mutations[at + 1:] and all(isinstance(m, PutUser) for m in mutations[at + 1:])
    assert not any(isinstance(m, PutUser) for m in mutations[:at])


async def test_a_redelivered_batch_is_skipped_up_to_the_applied_mark() -> None:
    store = RecordingStore()
    runner = Runner(store, FoldSettings("push"))
    shard = OneShard(runner)
    first = await shard.send(register("a"), follow("b", "a"))
    second = shard.batch(post("a", "p1"))
    await runner.handle(first)  # a redelivery: nothing happens
    assert len(store.applies) == 1
    # A longer redelivery (the consumer crashed before checkpointing): only the new part is folded.
    await runner.handle(Batch("s0", [*first.items, *second.items], 0))
    assert len(store.applies) == 2
    assert store.applies[1][2] == "3"
    assert (await store.users(["a"]))["a"].followers == 1
    # The mark is cached: one read of the applied marks for all those batches.
    assert store.applied_reads == 1
    # A restarted runner reads it again and still skips.
    restarted = Runner(store, FoldSettings("push"))
    await restarted.handle(Batch("s0", [*first.items, *second.items], 0))
    assert len(store.applies) == 2


async def test_undecodable_records_are_dead_lettered_and_the_shard_moves_on() -> None:
    store = RecordingStore()
    registry = CollectorRegistry()
    runner = Runner(store, FoldSettings("push"), Metrics(registry), clock_ms=lambda: 42)
    good = Delivered("s0", "2", register("a"), 0)
    bad = Undecodable("s0", "1", b"{oops", "malformed JSON")
    await runner.handle(Batch("s0", [bad, good], 0))
    assert await store.dead_letters(10) == [DeadLetter("s0", "1", "malformed JSON", b"{oops", 1, 42)]
    assert store.applies[0][2] == "2"
    assert "a" in await store.users(["a"])
    assert _value(registry, "fanline_dead_letters_total", shard_id="s0", reason="undecodable") == 1


async def test_a_failing_fold_is_retried_then_dead_lettered() -> None:
    calls: list[str] = []

    def flaky(state: BatchState, event: Event, settings: FoldSettings) -> list[Mutation]:
        calls.append(event.id)
        if event.id == bad_event.id or calls.count(event.id) == 1:
            raise RuntimeError("boom")
        return fold_event(state, event, settings)

    store = RecordingStore()
    runner = Runner(store, FoldSettings("push"), fold_attempts=3, fold=flaky, clock_ms=lambda: 7)
    bad_event, good_event = register("bad"), register("good")
    items: list[Delivered | Undecodable] = [
        Delivered("s0", "1", bad_event, 0), Delivered("s0", "2", good_event, 0)
    ]
    await runner.handle(Batch("s0", items, 0))
    assert calls.count(bad_event.id) == 3  # bounded
    assert calls.count(good_event.id) == 2  # failed once, then folded
    assert await store.dead_letters(10) == [
        DeadLetter("s0", "1", "RuntimeError: boom", encode(bad_event), 3, 7)
    ]
    assert set(await store.users(["bad", "good"])) == {"good"}
    assert (await store.applied())["s0"] == "2"


async def test_a_rejected_event_is_dead_lettered_without_retries() -> None:
    store = RecordingStore()
    shard = OneShard(Runner(store, FoldSettings("push"), clock_ms=lambda: 1))
    await shard.send(post("a", "p1"))
    await shard.send(post("b", "p1"))  # someone else's post id
    [letter] = await store.dead_letters(10)
    assert (letter.sequence, letter.attempts) == ("2", 1)
    assert letter.error.startswith("rejected: post id 'p1' already belongs")


async def test_metrics_count_lag_deliveries_and_writes_per_event_type() -> None:
    registry = CollectorRegistry()
    store = MemoryStore()
    runner = Runner(store, FoldSettings("push"), Metrics(registry))
    shard = OneShard(runner)
    batch = shard.batch(register("a"), follow("b", "a"), follow("c", "a"), post("a", "p1"))
    await runner.handle(Batch(batch.shard_id, batch.items, millis_behind=1234))
    assert _value(registry, "fanline_processor_millis_behind", shard_id="s0") == 1234
    # p1 goes to a, b and c.
    assert _value(registry, "fanline_timeline_deliveries_total", strategy="push") == 3
    assert _value(registry, "fanline_items_written_total", event_type="PostCreated", strategy="push") == 4
    # Each follow: two edge items and the user record.
    assert _value(registry, "fanline_items_written_total", event_type="UserFollowed", strategy="push") == 6
    assert _value(registry, "fanline_bytes_written_total", event_type="PostCreated", strategy="push") > 0
    assert _value(registry, "fanline_timeline_trims_total", strategy="push") == 3


def test_coalesce_merges_runs_of_puts_in_key_order_but_never_across_a_delete() -> None:
    e = TimelineEntry
    mutations: list[Mutation] = [
        PutTimelineEntries((e("b", 2, "p2", "a"), e("a", 2, "p2", "a"))),
        TrimTimelines(("a", "b"), 5),
        PutPost(Post("p2", "a", "x", 2)),
        PutTimelineEntries((e("a", 1, "p1", "a"),)),
        DeleteTimelineEntries((("a", 2, "p2"),)),
        PutUser(User("a", "aa", "", 3)),
        PutTimelineEntries((e("c", 3, "p3", "a"),)),
        TrimTimelines(("c",), 5),
    ]
    assert coalesce(mutations, 5) == [
        PutTimelineEntries((e("a", 2, "p2", "a"), e("a", 1, "p1", "a"), e("b", 2, "p2", "a"))),
        PutPost(Post("p2", "a", "x", 2)),
        DeleteTimelineEntries((("a", 2, "p2"),)),
        PutTimelineEntries((e("c", 3, "p3", "a"),)),
        TrimTimelines(("a", "b", "c"), 5),
        PutUser(User("a", "aa", "", 3)),
    ]


async def test_a_demotion_survives_a_crash_part_way_through_a_parallel_apply() -> None:
    # Whatever part of the batch lands (as DynamoDBStore leaves it: every run of writes before
    # the last trim done, any part of the run under way), the redelivery still pushes the
    # demoted celebrity's posts: its user record lands only after they have.
    settings = FoldSettings("hybrid", celebrity_threshold=3)
    for seed in range(60):
        store = MemoryStore()
        shard = OneShard(Runner(store, settings))
        fans = [follow(f"f{i}", "a") for i in range(3)]
        await shard.send(register("a"), *fans, post("a", "p1"))
        assert (await store.users(["a"]))["a"].celebrity
        crashing = CrashingStore(store)
        crashing.plan = seed
        batch = shard.batch(unfollow("f0", "a"), post("a", "p2"))
        with pytest.raises(Crash):
            await Runner(crashing, settings).handle(batch)  # type: ignore[arg-type]
        await Runner(store, settings).handle(batch)
        reader = TimelineReader(store, "hybrid")
        for fan in ("f1", "f2"):
            assert [i.post_id for i in (await reader.page(fan, 10)).items] == ["p2", "p1"], seed
        assert (await reader.page("f0", 10)).items == []


def test_coalesce_keeps_only_the_last_record_of_each_user_in_the_order_of_the_last_puts() -> None:
    mutations: list[Mutation] = [
        PutUser(User("a", "aa", "", 1)),
        PutUser(User("b", "bb", "", 1)),
        PutUser(User("a", "aa", "", 2)),
        PutPost(Post("p1", "c", "x", 1)),
        PutUser(User("c", "cc", "", 0)),
        PutUser(User("b", "bb", "", 2, True)),
    ]
    assert coalesce(mutations, 5) == [
        PutPost(Post("p1", "c", "x", 1)),
        PutUser(User("a", "aa", "", 2)),
        PutUser(User("c", "cc", "", 0)),
        PutUser(User("b", "bb", "", 2, True)),
    ]


async def test_metrics_count_every_event_of_a_batch_counted_per_event_type_at_once() -> None:
    registry = CollectorRegistry()
    runner = Runner(MemoryStore(), FoldSettings("push"), Metrics(registry))
    shard = OneShard(runner)
    fans = [follow(f"f{i}", "a") for i in range(5)]
    await shard.send(register("a"), *fans, post("a", "p1"), post("a", "p2"))
    assert _value(registry, "fanline_events_processed_total", event_type="UserRegistered") == 1
    assert _value(registry, "fanline_events_processed_total", event_type="UserFollowed") == 5
    assert _value(registry, "fanline_events_processed_total", event_type="PostCreated") == 2
    # Every follow's two edge items and its user record, though the batch writes the record once.
    assert _value(registry, "fanline_items_written_total", event_type="UserFollowed", strategy="push") == 15
    assert _value(registry, "fanline_timeline_deliveries_total", strategy="push") == 12
