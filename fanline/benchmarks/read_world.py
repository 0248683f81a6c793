"""The read benchmark's world: F1's generator (load/world.py) at N users, processed by the Runner.

Events go through the Log port (SQLiteLog) with `load.world.write_world`, then the real Runner
folds every shard into a SQLiteStore, shard by shard (every event one projection item depends
on lives on one shard, so shard order is all that matters). The world is built once per data
directory and reused: `world.json` there (written last) says it is complete and what it holds.

Shape: the POPULAR_SHARE most popular accounts (1 % of users) are followed by a tenth of everyone,
each user follows FOLLOWS_PER_USER others at random and writes POSTS_PER_USER posts. The top 1 %
by followers are the celebrities: the threshold is the smallest follower count in that tier, as
DESIGN.md says for every scale.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from load.world import WorldSpec, user_id, world_events, write_world
from processors.metrics import Metrics
from processors.runner import Runner
from processors.settings import FoldSettings
from projections.sqlite_store import SQLiteStore
from streams.consumer import to_batch
from streams.events import UserFollowed
from streams.log import Position
from streams.sqlite_log import SQLiteLog

POSTS_PER_USER = 5
FOLLOWS_PER_USER = 15
POPULAR_SHARE = 0.1
READ_BATCH = 10_000


@dataclass(frozen=True)
class WorldInfo:
    users: int
    events: int
    celebrity_threshold: int
    celebrities: int
    seed: int
    build_s: float


def spec(users: int, seed: int) -> WorldSpec:
    return WorldSpec(users=users, posts_per_user=POSTS_PER_USER, popular=max(1, users // 100),
                     popular_share=POPULAR_SHARE, follows_per_user=FOLLOWS_PER_USER, seed=seed)


def log_path(data_dir: Path) -> Path:
    return data_dir / "log.db"


def store_path(data_dir: Path) -> Path:
    return data_dir / "store.db"


def celebrity_threshold(world: WorldSpec) -> int:
    """The smallest follower count among the top 1 % of users by followers."""
    followers = Counter(e.data.followee_id for e in world_events(world) if isinstance(e, UserFollowed))
    top = sorted(followers.values(), reverse=True)
    return top[min(len(top), max(1, world.users // 100)) - 1]


async def _process_all(log: SQLiteLog, runner: Runner) -> None:
    for shard in await log.shards():
        reader = log.reader(shard.shard_id, Position.trim_horizon())
        while True:
            result = await reader.read(READ_BATCH)
            if not result.records:
                break
            await runner.handle(to_batch(shard.shard_id, result))


async def build_world(data_dir: Path, users: int, seed: int = 7) -> WorldInfo:
    """The world in `data_dir`, built now unless a complete one of this size is there already."""
    marker = data_dir / "world.json"
    if marker.exists():
        info = WorldInfo(**json.loads(marker.read_text()))
        if info.users == users and info.seed == seed:
            return info
        raise RuntimeError(f"{data_dir} holds a different world ({info}); use another --data-dir")
    if log_path(data_dir).exists() or store_path(data_dir).exists():
        raise RuntimeError(f"{data_dir} holds an unfinished world; remove it and run again")
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    world = spec(users, seed)
    threshold = celebrity_threshold(world)
    log = SQLiteLog(log_path(data_dir), shard_count=4)
    store = SQLiteStore(store_path(data_dir))
    try:
        events = await write_world(log, world)
        settings = FoldSettings(strategy="hybrid", celebrity_threshold=threshold)
        await _process_all(log, Runner(store, settings, Metrics(CollectorRegistry())))
        celebrities = sum(1 for u in (await store.users([user_id(i) for i in range(users)])).values()
                          if u.celebrity)
    finally:
        await store.close()
        await log.close()
    info = WorldInfo(users=users, events=events, celebrity_threshold=threshold, celebrities=celebrities,
                     seed=seed, build_s=round(time.monotonic() - started, 1))
    marker.write_text(json.dumps(asdict(info)))
    return info


if __name__ == "__main__":  # a quick look: python -m fanline.benchmarks.read_world DIR [USERS]
    import sys

    print(asyncio.run(build_world(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 5000)))
