"""A replay killed with SIGKILL part-way and started again finishes with the same result: on the
streaming path (killed once a batch is durable: the next run goes on from there) and on the
bulk path (killed while writing the store: the next run starts the bulk phase again)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fanline import versions
from fanline.settings import Settings
from fanline.wiring import open_log
from load.world import WorldSpec, write_world
from projections.sqlite_bulk import building_path
from projections.sqlite_store import SQLiteStore

FANLINE = [sys.executable, "-c", "from fanline.cli import main; main()"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FANLINE, *args], env=env, capture_output=True, text=True, timeout=120)


async def world_to_replay(tmp_path: Path) -> tuple[Settings, int, dict[str, str]]:
    """A 2 000-user world in the log of `tmp_path`: its settings, its event count, and the
    environment of a `fanline` child process on it."""
    settings = Settings.load({"data_dir": tmp_path}, environ={})
    log = await open_log(settings)
    events = await write_world(log, WorldSpec(users=2000, posts_per_user=6))
    await log.close()
    return settings, events, {**os.environ, "FANLINE_DATA_DIR": str(tmp_path)}


def start_replay(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`fanline replay ARGS` in a child process, its output discarded (it is to be killed)."""
    return subprocess.Popen([*FANLINE, "replay", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def _applied(store_file: Path) -> dict[str, str]:
    if not store_file.exists():
        return {}
    store = SQLiteStore(store_file)
    try:
        return await store.applied()
    finally:
        await store.close()


async def test_a_replay_killed_part_way_resumes_to_the_same_result(tmp_path: Path) -> None:
    settings, events, env = await world_to_replay(tmp_path)
    child = start_replay(["--bulk-max-events", "0"], env)  # streaming
    try:
        store_file = tmp_path / "store-r1.db"
        deadline = time.monotonic() + 60
        applied: dict[str, str] = {}
        while not applied:  # kill it once its first batch is durable
            assert time.monotonic() < deadline and child.poll() is None, "it ended before it was killed"
            applied = await _applied(store_file)
            await asyncio.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    pointer = await versions.open_pointer(settings)
    half = await pointer.get()
    assert (half.active, half.building) == ("", "r1")  # killed before the switch

    resumed = run(["replay"], env)  # the version has batches applied: it streams on from them
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the build of projection version 'r1'" in resumed.stdout
    assert '"path": "streaming"' in resumed.stdout
    done = await pointer.get()
    assert (done.active, done.building, done.old) == ("r1", None, ("",))
    await pointer.close()

    checked = run(["replay", "--verify"], env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "identical: true" in checked.stdout
    last = checked.stdout.strip().splitlines()[-1]
    assert f'"events": {events}' in last and '"identical": true' in last


async def test_a_bulk_replay_killed_while_writing_starts_again_to_the_same_result(tmp_path: Path) -> None:
    settings, events, env = await world_to_replay(tmp_path)
    child = start_replay([], env)
    store_file = tmp_path / "store-r1.db"
    try:
        deadline = time.monotonic() + 60
        while not building_path(store_file).exists():  # kill it while it writes the store
            assert time.monotonic() < deadline and child.poll() is None, "it ended before it was killed"
            await asyncio.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert await _applied(store_file) == {}  # nothing half-written where the store goes
    pointer = await versions.open_pointer(settings)
    assert (await pointer.get()).building == "r1"

    resumed = run(["replay"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the build of projection version 'r1'" in resumed.stdout
    assert '"path": "bulk"' in resumed.stdout and f'"bulk_events": {events}' in resumed.stdout
    assert not building_path(store_file).exists()
    done = await pointer.get()
    assert (done.active, done.building, done.old) == ("r1", None, ("",))
    await pointer.close()

    checked = run(["replay", "--verify"], env)  # the live version "" was never built: r1 is live now
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "identical: true" in checked.stdout
