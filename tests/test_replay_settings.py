"""Fold settings travel with a projection version: the replay records them in the pointer, a
resumed build keeps them, and the processors and the read API fold and read each version with
them, saying so when the environment disagrees."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest

from fanline import versions
from fanline.commands.deadletters import retry_letter
from fanline.commands.replay import replay, verify
from fanline.processing import open_following_store
from fanline.settings import Settings
from fanline.wiring import fold_settings, open_log
from processors.runner import Runner
from processors.settings import FoldSettings
from projections.records import DeadLetter
from projections.sqlite_store import SQLiteStore
from projections.switching import SwitchingTimelineReader
from projections.versions import FilePointer, Versions
from streams.delivery import Batch, Delivered
from streams.events import PostCreated, PostCreatedData, encode
from tests.replay_helpers import Processors, append, caught_up, wait_for
from tests.test_lambda_switch import EVENTS
from tests.up_server import running_up

PULL = versions.fold_record(FoldSettings(strategy="pull"))


def test_a_version_without_recorded_settings_takes_the_environments(caplog: pytest.LogCaptureFixture) -> None:
    environment = FoldSettings(strategy="hybrid", celebrity_threshold=7)
    with caplog.at_level(logging.WARNING):
        assert versions.version_fold(Versions(), "", environment) is environment
        assert versions.version_fold(Versions(fold={"r1": versions.fold_record(environment)}), "r1",
                                     environment) == environment
    assert caplog.records == []


def test_recorded_settings_win_and_a_warning_names_what_differs(caplog: pytest.LogCaptureFixture) -> None:
    recorded = FoldSettings(strategy="push", celebrity_threshold=3154)
    pointed = Versions(active="r1", fold={"r1": versions.fold_record(recorded)})
    with caplog.at_level(logging.WARNING):
        assert versions.version_fold(pointed, "r1", FoldSettings()) == recorded
    [warning] = caplog.records
    assert "'r1'" in warning.getMessage() and "strategy=push (environment: hybrid)" in warning.getMessage()
    assert "celebrity_threshold=3154 (environment: 50000)" in warning.getMessage()
    assert "timeline_cap" not in warning.getMessage()


def test_bad_recorded_settings_are_refused() -> None:
    pointed = Versions(fold={"": {"strategy": "sideways"}})
    with pytest.raises(ValueError, match="bad fold settings"):
        versions.version_fold(pointed, "", FoldSettings())


async def test_a_replay_records_its_settings_and_a_resumed_one_keeps_them(tmp_path: Path) -> None:
    push = Settings.load({"data_dir": tmp_path, "strategy": "push", "celebrity_threshold": 9}, environ={})
    log = await open_log(push)
    await append(log, EVENTS)
    await replay(push)
    pointer = FilePointer(tmp_path / versions.POINTER_FILE)
    assert (await pointer.get()).fold == {"r1": versions.fold_record(fold_settings(push))}

    # A build of r2 begun with pull and killed; resumed from an environment that says push.
    begun = await pointer.get()
    await pointer.set(Versions(active=begun.active, building="r2", old=begun.old,
                               fold={**begun.fold, "r2": PULL}))
    await replay(push)
    after = await pointer.get()
    assert after.active == "r2" and after.fold["r2"] == PULL and after.fold["r1"] == begun.fold["r1"]
    r1, r2 = [await versions.open_store_version(push, v) for v in ("r1", "r2")]
    assert len(await r1.timeline_page("u2", 10, None)) == 5  # push: u1's posts in u2's timeline
    assert await r2.timeline_page("u2", 10, None) == []  # pull: no timelines
    for store in (r1, r2):
        await store.close()
    await log.close()


async def test_the_processors_and_the_api_use_the_versions_settings(tmp_path: Path) -> None:
    settings = Settings.load({"data_dir": tmp_path, "strategy": "push"}, environ={})
    await FilePointer(tmp_path / versions.POINTER_FILE).set(Versions(fold={"": PULL}))
    log = await open_log(settings)
    processors = Processors(settings, log)  # told push, as the environment says
    try:
        await append(log, EVENTS)
        await wait_for(lambda: caught_up(settings, log), 30)
    finally:
        await processors.stop()
    store = await versions.open_store_version(settings, "")
    assert await store.timeline_page("u2", 10, None) == []  # folded with pull: no timelines
    await store.close()

    following = await open_following_store(settings)
    assert following.strategy == "pull"
    page = await SwitchingTimelineReader(following).page("u2", 10)
    assert [item.post_id for item in page.items] == ["p8", "p7", "p6", "p5", "p4"]  # read with pull
    await following.close()
    figures = await verify(settings)  # rebuilt with the version's pull, not the environment's push
    assert figures["identical"] is True, figures
    await log.close()


async def test_a_dead_letter_is_retried_with_the_versions_settings(tmp_path: Path) -> None:
    settings = Settings.load({"data_dir": tmp_path, "strategy": "push"}, environ={})
    await FilePointer(tmp_path / versions.POINTER_FILE).set(Versions(fold={"": PULL}))
    store = await versions.open_store_version(settings, "")
    runner = Runner(store, FoldSettings(strategy="pull"))
    await runner.handle(Batch("s", [Delivered("s", str(n), e, 0) for n, e in enumerate(EVENTS[:3], 1)], 0))
    post = PostCreated(id="late", ts=50, data=PostCreatedData("late", "u1", "again"))
    await store.put_dead_letter(DeadLetter("s", "2", "fold_failed: once", encode(post), 3, 0))
    assert await retry_letter(store, settings, (await store.dead_letters(10))[0]) is None
    assert set(await store.posts_by_id(["late"])) == {"late"}
    assert await store.timeline_page("u2", 10, None) == []  # folded with pull, not the environment's push
    await store.close()


def test_up_serves_the_version_with_its_settings_and_says_the_environment_differs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    FilePointer(data / versions.POINTER_FILE)._set(Versions(fold={"": PULL}))
    with running_up(tmp_path, {"FANLINE_STRATEGY": "push"}) as base:
        alice, bob = (httpx.post(f"{base}/v1/auth/signup", json={"handle": name, "password": "long enough"})
                      .json() for name in ("alice", "bob"))
        headers = {"Authorization": f"Bearer {alice['token']}"}
        assert httpx.post(f"{base}/v1/follows", headers=headers,
                          json={"followee_id": bob["user_id"]}).status_code == 202
        posted = httpx.post(f"{base}/v1/posts", json={"body": "pulled"},
                            headers={"Authorization": f"Bearer {bob['token']}"}).json()
        deadline = time.monotonic() + 30  # the processors (a child) may take a while to start here
        while time.monotonic() < deadline:
            page = httpx.get(f"{base}/v1/users/{alice['user_id']}/timeline", headers=headers,
                             params={"consistent_after": posted["consistency_token"]}).json()
            if page["items"]:
                break
        assert [item["body"] for item in page["items"]] == ["pulled"]
        assert httpx.get(f"{base}/v1/pipeline").json()["strategy"] == "pull"
    output = (tmp_path / "up.log").read_text()
    # Both the API and the processors (the child) say so.
    assert output.count("projection version '' was built with other fold settings") == 2, output
    assert "strategy=pull (environment: push)" in output
    store = SQLiteStore(data / "store.db")
    assert asyncio.run(store.timeline_page(alice["user_id"], 10, None)) == []  # folded with pull
    asyncio.run(store.close())


async def test_a_build_resumed_without_recorded_settings_records_the_ones_it_uses(tmp_path: Path) -> None:
    settings = Settings.load({"data_dir": tmp_path, "strategy": "pull"}, environ={})
    log = await open_log(settings)
    await append(log, EVENTS)
    pointer = FilePointer(tmp_path / versions.POINTER_FILE)
    await pointer.set(Versions(building="r1"))  # begun by a replay from before the pointer had `fold`
    await replay(settings)
    assert (await pointer.get()) == Versions(active="r1", old=("",), fold={"r1": PULL})
    await log.close()


async def test_at_a_switch_to_other_settings_the_processors_and_the_api_take_the_new_versions(
    tmp_path: Path
) -> None:
    push = Settings.load({"data_dir": tmp_path, "strategy": "push"}, environ={})
    log = await open_log(push)
    processors = Processors(push, log)  # started with push, which version "" keeps
    following = await open_following_store(push)
    following._check_every_s = 0.0  # look at the pointer on every call
    try:
        await append(log, EVENTS[:5])
        await wait_for(lambda: caught_up(push, log), 30)
        assert following.strategy == "push"
        await replay(Settings.load({"data_dir": tmp_path, "strategy": "pull"}, environ={}))  # r1: pull
        await append(log, EVENTS[5:])
        await wait_for(lambda: caught_up(push, log), 30)  # the processors folded 6..8 into r1
        page = await SwitchingTimelineReader(following).page("u2", 10)
        assert following.version == "r1" and following.strategy == "pull"
        assert [item.post_id for item in page.items] == ["p8", "p7", "p6", "p5", "p4"]
    finally:
        await processors.stop()
        await following.close()
    r1 = await versions.open_store_version(push, "r1")
    assert await r1.timeline_page("u2", 10, None) == []  # 6..8 folded with pull too
    await r1.close()
    assert (await verify(push))["identical"] is True
    await log.close()
