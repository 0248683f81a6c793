"""Shared by the fault tests: histories as raw log records, waiting for the processors, and the
comparison with the reference model (tests/processors/reference_model.py) of every namespace.

Histories are those of the property tests (tests/processors/histories.py), drawn here from a seeded
random generator rather than hypothesis, so a fault test is one long deterministic run; each
namespace stays within the reference model's limits (12 users, 14 posts), and a run uses many.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from processors.settings import FoldSettings
from projections.store import Store
from streams.events import encode, partition_key
from streams.log import Appended, Log
from tests.processors import histories
from tests.processors.reference_model import ReferenceModel
from tests.processors.test_properties import assert_matches_reference

THRESHOLD = 3
LIMIT = 4  # page size of the comparison: pages through every timeline with cursors


def fold_env() -> dict[str, str]:
    """The settings the processors need for the reference model's limits, as FANLINE_* variables."""
    s = histories.settings_for("hybrid", THRESHOLD)
    return {"FANLINE_STRATEGY": s.strategy, "FANLINE_CELEBRITY_THRESHOLD": str(s.celebrity_threshold),
            "FANLINE_TIMELINE_CAP": str(s.timeline_cap), "FANLINE_BACKFILL_DEPTH": str(s.backfill_depth)}


def fold_settings() -> FoldSettings:
    return histories.settings_for("hybrid", THRESHOLD)


def random_ops(rng: random.Random, count: int) -> list[tuple[Any, ...]]:
    """Operations of the shape tests/processors/histories.py draws (busy users u0..u2 favoured)."""
    users = histories.USERS

    def busy() -> int:
        return rng.randrange(3) if rng.random() < 0.5 else rng.randrange(users)

    makers = [
        lambda: ("register", busy(), rng.random() < 0.2),
        lambda: ("register", rng.randrange(users), False),
        lambda: ("follow", rng.randrange(users), busy()),
        lambda: ("crowd", busy(), rng.choice([1, 3])),
        lambda: ("uncrowd", busy(), rng.choice([1, 2])),
        lambda: ("unfollow", rng.randrange(users), busy()),
        lambda: ("undo", rng.randrange(100)),
        lambda: ("post", busy(), rng.randrange(3)),
        lambda: ("post", busy(), rng.randrange(3)),
        lambda: ("delete", rng.randrange(100)),
        lambda: ("dup", rng.randrange(100)),
    ]
    return [rng.choice(makers)() for _ in range(count)]


class World:
    """Many namespaces of history, the reference model of each, appended in interleaved chunks."""

    def __init__(self, seed: int, namespaces: int, ops_each: int, prefix: str = "f") -> None:
        rng = random.Random(seed)
        self.namespaces = [f"{prefix}{seed}n{i}" for i in range(namespaces)]
        self.histories = {
            ns: histories.build_history(ns, random_ops(rng, ops_each)) for ns in self.namespaces
        }
        self.models: dict[str, ReferenceModel] = {}
        for ns, events in self.histories.items():
            model = ReferenceModel(THRESHOLD)
            for event in events:
                model.apply(event)
            self.models[ns] = model

    def records(self) -> list[tuple[str, bytes]]:
        """Every event as (partition key, bytes), namespaces interleaved, each in its own order."""
        queues = [list(events) for events in self.histories.values()]
        out: list[tuple[str, bytes]] = []
        while any(queues):
            for queue in queues:
                out.extend((partition_key(e), encode(e)) for e in queue[:5])
                del queue[:5]
        return out

    async def check(self, store: Store) -> None:
        for ns in self.namespaces:
            await assert_matches_reference(store, "hybrid", ns, self.models[ns], LIMIT)


def last_per_shard(appended: Sequence[Appended]) -> dict[str, int]:
    last: dict[str, int] = {}
    for a in appended:
        last[a.shard_id] = max(last.get(a.shard_id, 0), int(a.sequence))
    return last


async def append_all(log: Log, records: Sequence[tuple[str, bytes]], chunk: int = 200) -> list[Appended]:
    appended: list[Appended] = []
    for start in range(0, len(records), chunk):
        appended += await log.append(records[start:start + chunk])
    return appended


async def wait_applied(store: Store, targets: dict[str, int], timeout_s: float) -> None:
    """Until the store's applied mark of every shard has reached its target (or fail)."""
    deadline = time.monotonic() + timeout_s
    marks: dict[str, str] = {}
    while time.monotonic() < deadline:
        marks = await store.applied()
        if all(int(marks.get(shard, "0")) >= seq for shard, seq in targets.items()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not applied within {timeout_s:g} s: marks {marks}, targets {targets}")


class Zygote:
    """The fork server of tests/faults/zygote.py; every worker it spawned is stopped by pid at close."""

    def __init__(self, data_dir: Path, env: dict[str, str], lease_timeout_s: float) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FANLINE_")}
        full_env.update(env, FANLINE_DATA_DIR=str(data_dir))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.zygote", str(data_dir), str(lease_timeout_s)],
            env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.pids: list[int] = []

    def spawn(self, worker_id: str, record: Path | None = None, pause_s: float = 0.0) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"spawn {worker_id} {record or '-'} {pause_s}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().split()
        assert answer[:1] == ["pid"], f"zygote said {answer!r}"
        pid = int(answer[1])
        self.pids.append(pid)
        return pid

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    async def gone(self, pid: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.alive(pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {pid} still running after {timeout_s:g} s")
            await asyncio.sleep(0.02)

    async def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        await self.gone(pid, 10)

    async def stop(self, pid: int, timeout_s: float = 15) -> None:
        os.kill(pid, signal.SIGTERM)
        await self.gone(pid, timeout_s)

    def close(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
