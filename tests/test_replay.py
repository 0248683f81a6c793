"""Replay on the embedded backend: a history processed live, then replayed, gives identical
projections; the processors move to the new version at the switch without losing or doubling
an event that arrives during or after it; the read API answers throughout and switches."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import httpx

from api.app import create_app
from api.auth import Tokens
from fanline import versions
from fanline.commands.replay import drop_old_versions, replay, verify
from fanline.processing import open_following_store
from fanline.settings import Settings
from fanline.wiring import open_accounts, open_log
from load.world import user_id
from projections.records import PutUser, User
from streams.log import Log
from tests.replay_helpers import THRESHOLD, Processors, append, caught_up, history, more_posts, wait_for

USERS = 200


def settings_for(tmp_path: Path) -> Settings:
    return Settings.load({"data_dir": tmp_path, "celebrity_threshold": THRESHOLD}, environ={})


async def trickle(log: Log, events: list[object], pause_s: float = 0.01) -> None:
    """Events arriving while a replay runs, a few at a time."""
    for i in range(0, len(events), 5):
        await append(log, events[i:i + 5])  # type: ignore[arg-type]
        await asyncio.sleep(pause_s)


async def test_live_then_replayed_is_identical_and_the_switch_loses_nothing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = await open_log(settings)
    processors = Processors(settings, log)
    try:
        events = history(USERS)
        await append(log, events)
        await wait_for(lambda: caught_up(settings, log), 40)
        first = await verify(settings)
        assert first["identical"] is True and first["events"] == len(events)

        # A replay into r1 while the processors keep writing version "" and events keep coming.
        during = asyncio.create_task(trickle(log, more_posts(USERS, "during", 150)))
        switched = await replay(settings)
        await during
        assert switched["version"] == "r1" and switched["previous"] == ""
        await append(log, more_posts(USERS, "after", 60, start_ts=10**15))
        await wait_for(lambda: caught_up(settings, log), 40)  # the active version is r1 now
    finally:
        await processors.stop()
    pointer = await versions.open_pointer(settings)
    assert (await pointer.get()).active == "r1"
    r1 = await versions.open_store_version(settings, "r1")
    try:
        assert set(await r1.posts_by_id(["afterp59", "duringp149"])) == {"afterp59", "duringp149"}
    finally:
        await r1.close()
    again = await verify(settings)
    assert again["identical"] is True, again
    assert again["events"] == len(events) + len(more_posts(USERS, "d", 150)) + len(more_posts(USERS, "a", 60))
    (tmp_path / "store.db.bulk").write_bytes(b"")  # as a bulk replay killed while writing leaves it
    assert await drop_old_versions(settings) == ([""], [])  # on SQLite, "" is the replay's to delete
    assert not (tmp_path / "store.db").exists() and (tmp_path / "store-r1.db").exists()
    assert not (tmp_path / "store.db.bulk").exists()
    assert (await pointer.get()).old == ()
    await pointer.close()
    await log.close()


async def test_verify_names_the_first_differences(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = await open_log(settings)
    processors = Processors(settings, log)
    await append(log, history(40))
    await wait_for(lambda: caught_up(settings, log), 30)
    await processors.stop()
    await log.close()
    store = await versions.open_store_version(settings, "")
    await store.apply([PutUser(User(user_id(3), "tampered", "T"))], "x", "1")  # a projection bug
    await store.close()
    figures = await verify(settings)
    assert figures["identical"] is False and figures["differences"] == 2  # the user, and applied["x"]


async def test_the_read_api_answers_throughout_a_replay_and_switches(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = await open_log(settings)
    processors = Processors(settings, log)
    await append(log, history(USERS))
    await wait_for(lambda: caught_up(settings, log), 40)
    await processors.stop()

    store = await open_following_store(settings)
    accounts = await open_accounts(settings)
    app = create_app(log, store, accounts, secret="x" * 32, strategy="hybrid")
    token = Tokens("x" * 32).issue("test", "producer")
    readers = [user_id(i) for i in range(0, USERS, 17)]
    statuses: list[int] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                 headers={"Authorization": f"Bearer {token}"}) as client:

        async def read_all() -> dict[str, object]:
            pages = {}
            for reader in readers:
                answer = await client.get(f"/v1/users/{reader}/timeline", params={"limit": 20})
                statuses.append(answer.status_code)
                pages[reader] = answer.json()
            return pages

        before = await read_all()
        env = {**os.environ, "FANLINE_DATA_DIR": str(tmp_path), "FANLINE_CELEBRITY_THRESHOLD": str(THRESHOLD)}
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from fanline.cli import main; main()", "replay",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        reads_during = 0
        while child.returncode is None:
            await read_all()
            reads_during += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), 0.01)
        output = (await child.stdout.read()).decode() if child.stdout else ""
        assert child.returncode == 0, output
        await asyncio.sleep(1.1)  # the API looks at the pointer at most once a second
        after = await read_all()
    assert reads_during > 0
    assert set(statuses) == {200}
    assert store.version == "r1"
    assert after == before  # the same history, rebuilt
    await store.close()
    await accounts.close()
    await log.close()
