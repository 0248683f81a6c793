"""Random histories through the Runner, with redeliveries and crashes, equal the reference model.

For push, pull and hybrid, on every Store adapter: users (counts, celebrity flags), edges
both ways, posts, and every timeline and post list paged through with cursors. The limits
the histories stay within are in tests/processors/histories.py.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fanline.emulators import Emulator
from projections.dynamodb_store import DynamoDBStore
from projections.memory_store import MemoryStore
from projections.sqlite_store import SQLiteStore
from projections.store import Store
from projections.timeline import STRATEGIES, Strategy, TimelineReader
from tests.processors import histories
from tests.processors.reference_model import ReferenceModel

_namespaces = itertools.count()


def _ns() -> str:
    return f"x{next(_namespaces)}"


async def _all_ids(page: Callable[[str, int, str | None], Awaitable[list[str]]], user_id: str) -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        got = await page(user_id, 2, after)
        ids += got
        if len(got) < 2:
            return ids
        after = got[-1]


async def assert_matches_reference(
    store: Store, strategy: Strategy, ns: str, model: ReferenceModel, limit: int
) -> None:
    user_ids = [f"{ns}u{i}" for i in range(histories.USERS)]
    users = await store.users(user_ids)
    reader = TimelineReader(store, strategy)
    for uid in user_ids:
        assert users.get(uid) == model.user(uid), uid
        assert await _all_ids(store.followers_page, uid) == model.follower_ids(uid), uid
        assert await _all_ids(store.following_page, uid) == model.following_ids(uid), uid
        assert await store.following_count(uid) == len(model.following_ids(uid)), uid
        assert await histories.posts(reader, uid, limit) == model.posts_of(uid), uid
        assert await histories.timeline(reader, uid, limit) == model.timeline(uid), uid
    post_ids = [f"{ns}p{n:02d}" for n in range(histories.MAX_POSTS)]
    stored = await store.posts_by_id(post_ids)
    assert stored == {p: model.posts[p] for p in post_ids if p in model.posts}


async def run_example(
    store: Store, ops: list[tuple[Any, ...]], threshold: int, strategy: Strategy, limit: int,
    rng: random.Random,
) -> None:
    ns = _ns()
    events = histories.build_history(ns, ops)
    model = ReferenceModel(threshold)
    for event in events:
        model.apply(event)
    delivery = await histories.deliver(store, histories.settings_for(strategy, threshold), ns, events, rng)
    await assert_matches_reference(store, strategy, ns, model, limit)
    letters = await store.dead_letters(10_000)
    assert {(d.shard_id, d.sequence) for d in letters if d.shard_id.startswith(f"{ns}s")} == (
        delivery.dead_lettered
    )


# Examples random search meets too rarely, always run: a hybrid celebrity posting and then
# falling below 90 % of the threshold; one rising through 10 and resting inside the band.
_DEMOTION = [("register", 0, False), ("crowd", 0, 3), ("post", 0, 1), ("uncrowd", 0, 1)]
_BAND = [("crowd", 0, 10), ("register", 0, False), ("post", 0, 1), ("uncrowd", 0, 1), ("post", 0, 0)]


def _explicit(test: Any) -> Any:
    for strategy in STRATEGIES:
        test = example(ops=_DEMOTION, threshold=3, strategy=strategy, limit=2, seed=1)(test)
        test = example(ops=_BAND, threshold=10, strategy=strategy, limit=1, seed=2)(test)
    return test


_examples = given(
    ops=histories.operations,
    threshold=histories.thresholds,
    strategy=st.sampled_from(STRATEGIES),
    limit=st.integers(1, 4),
    seed=st.integers(0, 2**32),
)


@pytest.fixture(scope="module")
async def dynamodb_store(dynalite: Emulator) -> AsyncIterator[DynamoDBStore]:
    store = await DynamoDBStore.connect(endpoint_url=dynalite.endpoint_url, table_prefix="props-")
    await store.create_tables()
    yield store
    await store.close()


@pytest.fixture(scope="module")
def memory_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture(scope="module")
async def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(Path(tmp_path_factory.mktemp("props")) / "store.db")
    yield store
    await store.close()


@_examples
@_explicit
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
async def test_memory_store_matches_reference(
    memory_store: MemoryStore, ops: list[tuple[Any, ...]], threshold: int, strategy: Strategy,
    limit: int, seed: int,
) -> None:
    await run_example(memory_store, ops, threshold, strategy, limit, random.Random(seed))


@_examples
@_explicit
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
async def test_sqlite_store_matches_reference(
    sqlite_store: SQLiteStore, ops: list[tuple[Any, ...]], threshold: int, strategy: Strategy,
    limit: int, seed: int,
) -> None:
    await run_example(sqlite_store, ops, threshold, strategy, limit, random.Random(seed))


# DynamoDB applies a batch's writes in parallel runs: the partial applies of the delivery
# (`histories.landed`) are its crash mid-batch. Few examples (each costs hundreds of requests
# to dynalite): about 20 s on a quiet machine.
@_examples
@_explicit
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
async def test_dynamodb_store_matches_reference(
    dynamodb_store: DynamoDBStore, ops: list[tuple[Any, ...]], threshold: int, strategy: Strategy,
    limit: int, seed: int,
) -> None:
    await run_example(dynamodb_store, ops, threshold, strategy, limit, random.Random(seed))


@given(ops=histories.operations, threshold=histories.thresholds, limit=st.integers(1, 4))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
async def test_the_three_strategies_show_the_same_timelines(
    ops: list[tuple[Any, ...]], threshold: int, limit: int
) -> None:
    seen: dict[Strategy, list[Any]] = {}
    for strategy in STRATEGIES:
        store = MemoryStore()
        ns = "same"
        events = histories.build_history(ns, ops)
        await histories.deliver(store, histories.settings_for(strategy, threshold), ns, events,
                                random.Random(0), crash_rate=0.0)
        reader = TimelineReader(store, strategy)
        seen[strategy] = [
            await histories.timeline(reader, f"{ns}u{i}", limit) for i in range(histories.USERS)
        ]
    assert seen["push"] == seen["pull"] == seen["hybrid"]
