"""The four experiments of issue 5, over HTTP against `fanline up` on a tiered world.

Each strategy gets its own world directory (the same world, seed and events, processed with
that strategy), kept and reused: the world's log is generated and loaded once, and each
strategy's projections are replayed from it (`load.strategy_worlds`). Every figure counts only good
answers: a read is a success when it is a 200 with a well-formed, non-empty page
(`load.pages.page_problem`); failures are counted and shown next to the figures.

- retrieval: sequential timeline reads by readers of about 10, 100, 500 and the most followees
  (the nearest real users of the world, their actual following reported; no world user follows
  fewer than 50, so readers of exactly 10 are added through the API as probe users).
- consistency: posts by authors of each tier; at 100 ms, 500 ms, 1 s and 5 s after the 202, the
  fraction of sampled followers whose first page shows the post, under a steady background load.
- storage: items and bytes per projection table, and timeline items written per post.
- throughput: accepted posts/s and good timeline reads/s with 1 and 2 API and processor
  processes (`load.capacity` adds the model on paper for AWS).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api.auth import Tokens
from fanline.emulators import free_port
from fanline.settings import Settings
from load.pages import page_problem
from load.server import Server
from load.sqlite_sizes import table_sizes
from load.strategy_worlds import ensure_strategy_worlds, strategy_dir
from load.tiers import TieredWorld
from load.world import user_id

SCALES = {"5k": 5_000, "25k": 25_000, "100k": 100_000}
STRATEGIES = ("push", "pull", "hybrid")
EXPERIMENTS = ("retrieval", "consistency", "storage", "throughput")
FOLLOWING_TARGETS = (10, 100, 500, None)  # None: the largest in the world
CHECKPOINTS_S = (0.1, 0.5, 1.0, 5.0)
PAGE = 50
SEED = 7


@dataclass(frozen=True)
class Options:
    worlds: Path
    readers_per_bucket: int = 5
    reads_per_reader: int = 40
    probes: int = 12
    followers_per_probe: int = 20
    background_rps: float = 20.0
    throughput_s: float = 8.0
    concurrency: int = 16
    prebuilt: Path | None = None  # a `fanline world` directory of the scale to start from (only read)


# --- worlds ------------------------------------------------------------------------------------


def users_of(scale: str) -> int:
    """5k, 25k, 100k; or a plain number of users (small worlds for tests)."""
    if scale in SCALES:
        return SCALES[scale]
    if scale.isdigit() and int(scale) >= 3:
        return int(scale)
    raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")


def world_dir(options: Options, scale: str, strategy: str) -> Path:
    return strategy_dir(options.worlds, scale, strategy)


def ensure_worlds(
    options: Options, scale: str, strategies: Sequence[str], say: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """The worlds of this scale for these strategies, made now unless their directories hold them."""
    world = TieredWorld(users_of(scale), seed=SEED)
    return ensure_strategy_worlds(options.worlds, scale, strategies, world, options.prebuilt, say)


def serve(options: Options, scale: str, strategy: str, marker: dict[str, Any]) -> Server:
    return Server(
        world_dir(options, scale, strategy),
        strategy=strategy,
        threshold=int(marker["celebrity_threshold"]),
        extra_env={"FANLINE_SECRET": ""},
    )


def tokens_for(options: Options, scale: str, strategy: str) -> Tokens:
    settings = Settings.load({"data_dir": world_dir(options, scale, strategy)}, environ={})
    return Tokens(settings.signing_secret())


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was (other work shares the cores)."""
    load1, load5, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "loadavg_1m": round(load1, 2),
        "loadavg_5m": round(load5, 2),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


# --- retrieval ---------------------------------------------------------------------------------


def readers_by_following(world: TieredWorld, per_bucket: int) -> list[tuple[int | None, list[int] | None]]:
    """For each target following count, the `per_bucket` users whose following is nearest, or
    None when no user of the world is within 20 % of it (no one follows fewer than 50): then
    probe readers that follow exactly that many are added (`add_probe_readers`)."""
    counts = [len(row) for row in world.followees]
    largest = max(counts)
    out: list[tuple[int | None, list[int] | None]] = []
    for target in FOLLOWING_TARGETS:
        goal = largest if target is None else target
        nearest = sorted(range(world.users), key=lambda i: (abs(counts[i] - goal), i))[:per_bucket]
        close = all(abs(counts[i] - goal) <= 0.2 * goal for i in nearest)
        out.append((target, nearest if close else None))
    return out


def probe_events(world: TieredWorld, target: int, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Readers that follow exactly `target` world users: each a random `target` of a real regular
    user's followees (the world's popularity mix). Fixed ids: adding them twice changes nothing."""
    rng = random.Random(target)
    regular = sum(world.tier_sizes[:2])
    readers, events = [], []
    for k in range(count):
        me = f"probe-{target}-{k}"
        source = list(world.followees[rng.randrange(regular, world.users)])
        data = {"user_id": me, "handle": f"probe_{target}_{k}", "display_name": f"Probe {target}"}
        events.append({"type": "UserRegistered", "id": f"{me}-user", "data": data})
        events += [
            {
                "type": "UserFollowed",
                "id": f"{me}-follows-{j}",
                "data": {"follower_id": me, "followee_id": user_id(j)},
            }
            for j in sorted(rng.sample(source, min(target, len(source))))
        ]
        readers.append(me)
    return readers, events


async def add_probe_readers(
    client: httpx.AsyncClient,
    url: str,
    tokens: Tokens,
    world: TieredWorld,
    target: int,
    count: int,
    timeout_s: float = 120,
) -> list[str]:
    """Write the probe readers through the API, then wait until each one's timeline has a page."""
    readers, events = probe_events(world, target, count)
    auth = {"Authorization": f"Bearer {tokens.issue('fanline-experiment', 'producer')}"}
    for start in range(0, len(events), 500):
        answer = await client.post(
            f"{url}/v1/events", json={"events": events[start : start + 500]}, headers=auth
        )
        if answer.status_code != 202:
            raise RuntimeError(f"probe readers refused: {answer.status_code} {answer.text}")
    deadline = time.monotonic() + timeout_s
    for reader in readers:
        while True:
            _, _, problem = await read_timeline(client, url, reader, tokens.issue(reader))
            if problem is None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"probe reader {reader}: no timeline after {timeout_s} s ({problem})")
            await asyncio.sleep(0.2)
    return readers


async def read_timeline(
    client: httpx.AsyncClient, url: str, reader: str, token: str
) -> tuple[float, int, str | None]:
    """(latency ms, page bytes, problem or None) of one first-page read."""
    began = time.perf_counter()
    try:
        answer = await client.get(
            f"{url}/v1/users/{reader}/timeline",
            params={"limit": str(PAGE)},
            headers={"Authorization": f"Bearer {token}"},
        )
    except httpx.HTTPError as exc:
        return (time.perf_counter() - began) * 1000, 0, type(exc).__name__
    took = (time.perf_counter() - began) * 1000
    try:
        body = answer.json()
    except ValueError:
        body = None
    return took, len(answer.content), page_problem(answer.status_code, body)


async def retrieval(url: str, tokens: Tokens, world: TieredWorld, options: Options) -> list[dict[str, Any]]:
    counts = [len(row) for row in world.followees]
    rows = []
    async with httpx.AsyncClient(timeout=30) as client:
        for target, nearest in readers_by_following(world, options.readers_per_bucket):
            if nearest is None:
                assert target is not None  # the largest is always in the world
                readers = await add_probe_readers(
                    client, url, tokens, world, target, options.readers_per_bucket
                )
                following = [target] * len(readers)
            else:
                readers = [user_id(i) for i in nearest]
                following = [counts[i] for i in nearest]
            latencies: list[float] = []
            sizes: list[int] = []
            problems: Counter[str] = Counter()
            for reader in readers:
                token = tokens.issue(reader)
                await read_timeline(client, url, reader, token)  # warm: the first read opens the connection
                for _ in range(options.reads_per_reader):
                    took, size, problem = await read_timeline(client, url, reader, token)
                    if problem is None:
                        latencies.append(took)
                        sizes.append(size)
                    else:
                        problems[problem] += 1
            rows.append(
                {
                    "target": "largest" if target is None else target,
                    "following": round(statistics.median(following)),
                    "readers": len(readers),
                    "probe_readers": nearest is None,
                    "reads": len(latencies) + sum(problems.values()),
                    "failures": sum(problems.values()),
                    "problems": dict(problems),
                    **percentiles(latencies),
                    "page_bytes": round(statistics.median(sizes)) if sizes else 0,
                }
            )
    return rows


# --- consistency -------------------------------------------------------------------------------


async def _background(
    url: str, tokens: Tokens, users: int, rps: float, stop: asyncio.Event, tally: Counter[str]
) -> None:
    """80 % reads, 20 % posts at about `rps` requests per second until stopped; an empty or
    malformed page is tallied as the problem it is, not as ok."""
    rng = random.Random(11)
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            who = user_id(rng.randrange(users))
            auth = {"Authorization": f"Bearer {tokens.issue(who)}"}
            try:
                if rng.random() < 0.8:
                    answer = await client.get(f"{url}/v1/users/{who}/timeline", headers=auth)
                    problem = page_problem(answer.status_code, answer.json())
                else:
                    answer = await client.post(f"{url}/v1/posts", json={"body": "background"}, headers=auth)
                    problem = None if answer.status_code == 202 else f"status {answer.status_code}"
                tally[problem or "ok"] += 1
            except ValueError:
                tally["not JSON"] += 1
            except httpx.HTTPError as exc:
                tally[type(exc).__name__] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / rps)


def probe_authors(world: TieredWorld, count: int) -> list[int]:
    """Authors with followers, taken from each tier in turn (celebrity, influencer, regular)."""
    followers = world.follower_counts()
    rng = random.Random(5)
    tiers: list[list[int]] = [[], [], []]
    start = 0
    for t, size in enumerate(world.tier_sizes):
        tiers[t] = [i for i in range(start, start + size) if followers[i] > 0]
        start += size
    return [rng.choice(tiers[n % 3]) for n in range(count) if tiers[n % 3]]


async def _probe(
    client: httpx.AsyncClient, url: str, tokens: Tokens, author: int, followers: list[int], n: int
) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {tokens.issue(user_id(author))}"}
    answer = await client.post(f"{url}/v1/posts", json={"body": f"consistency probe {n}"}, headers=auth)
    accepted = time.perf_counter()
    if answer.status_code != 202:
        return {"author": user_id(author), "error": f"post answered {answer.status_code}"}
    post_id = answer.json()["post_id"]
    seen: set[int] = set()
    visible = []
    for checkpoint in CHECKPOINTS_S:
        await asyncio.sleep(max(0.0, accepted + checkpoint - time.perf_counter()))
        unseen = [f for f in followers if f not in seen]

        async def shows(f: int) -> bool:
            # Twice: the server closes a connection idle for 5 s (uvicorn's keep-alive) just as
            # the wait before the 5 s look may reuse it; a GET is safe to send again.
            for attempt in (1, 2):
                try:
                    page = await client.get(
                        f"{url}/v1/users/{user_id(f)}/timeline",
                        params={"limit": str(PAGE)},
                        headers={"Authorization": f"Bearer {tokens.issue(user_id(f))}"},
                    )
                    break
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    if attempt == 2:
                        raise
            return page.status_code == 200 and any(i["post_id"] == post_id for i in page.json()["items"])

        for f, shown in zip(unseen, await asyncio.gather(*(shows(f) for f in unseen)), strict=True):
            if shown:
                seen.add(f)
        visible.append(len(seen) / len(followers))
    return {"author": user_id(author), "followers_sampled": len(followers), "visible": visible}


async def consistency(url: str, tokens: Tokens, world: TieredWorld, options: Options) -> dict[str, Any]:
    all_followers = world.followers()
    rng = random.Random(9)
    stop = asyncio.Event()
    tally: Counter[str] = Counter()
    load = _background(url, tokens, world.users, options.background_rps, stop, tally)
    background = asyncio.create_task(load)
    probes = []
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            authors = probe_authors(world, options.probes)
            # Three probes at a time, staggered: a steady trickle rather than one burst.
            for start in range(0, len(authors), 3):
                group = authors[start : start + 3]
                jobs: list[Awaitable[dict[str, Any]]] = []
                for k, author in enumerate(group):
                    pool = list(all_followers[author])
                    sample = rng.sample(pool, min(options.followers_per_probe, len(pool)))
                    jobs.append(_delayed(0.3 * k, _probe(client, url, tokens, author, sample, start + k)))
                probes += await asyncio.gather(*jobs)
    finally:
        stop.set()
        await background
    good = [p for p in probes if "visible" in p]
    mean = [
        round(statistics.mean(p["visible"][k] for p in good), 4) if good else float("nan")
        for k in range(len(CHECKPOINTS_S))
    ]
    return {
        "checkpoints_s": list(CHECKPOINTS_S),
        "visible_fraction": mean,
        "inconsistency_ratio": [round(1 - v, 4) for v in mean],
        "probes": probes,
        "background": dict(tally),
        "background_rps": options.background_rps,
    }


async def _delayed(seconds: float, job: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    await asyncio.sleep(seconds)
    return await job


# --- storage -----------------------------------------------------------------------------------


def storage(options: Options, scale: str, strategy: str, marker: dict[str, Any]) -> dict[str, Any]:
    sizes = table_sizes(world_dir(options, scale, strategy) / "store.db")
    posts = int(marker.get("posts") or 0)
    entries = int(marker.get("timeline_entries") or 0)
    return {
        "tables": sizes,
        "posts": posts,
        "timeline_entries_written": entries,
        "write_amplification": round(entries / posts, 2) if posts else None,
    }


# --- throughput --------------------------------------------------------------------------------


async def _drive(
    urls: Sequence[str], tokens: Tokens, users: int, seconds: float, concurrency: int, kind: str
) -> dict[str, Any]:
    """As many posts (or reads) as `concurrency` clients get answered in `seconds`, good ones counted."""
    good = bad = 0
    deadline = time.perf_counter() + seconds

    async def client_loop(n: int) -> None:
        nonlocal good, bad
        rng = random.Random(n)
        async with httpx.AsyncClient(timeout=30) as client:
            while time.perf_counter() < deadline:
                url = urls[rng.randrange(len(urls))]
                who = user_id(rng.randrange(users))
                auth = {"Authorization": f"Bearer {tokens.issue(who)}"}
                try:
                    if kind == "posts":
                        answer = await client.post(
                            f"{url}/v1/posts", json={"body": "throughput"}, headers=auth
                        )
                        ok = answer.status_code == 202
                    else:
                        answer = await client.get(
                            f"{url}/v1/users/{who}/timeline", params={"limit": str(PAGE)}, headers=auth
                        )
                        ok = page_problem(answer.status_code, answer.json()) is None
                except (httpx.HTTPError, ValueError):
                    ok = False
                good, bad = good + ok, bad + (not ok)

    began = time.perf_counter()
    await asyncio.gather(*(client_loop(n) for n in range(concurrency)))
    took = time.perf_counter() - began
    return {"good": good, "failures": bad, "seconds": round(took, 2), "per_s": round(good / took, 1)}


def _extra(data_dir: Path, env: dict[str, str], args: list[str], out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as file:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from fanline.cli import main; main()",
                *args,
                "--data-dir",
                str(data_dir),
            ],
            stdout=file,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # by its pid: SIGTERM, it finishes its batch and releases its leases
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _started(
    data_dir: Path,
    env: dict[str, str],
    args: list[str],
    up: Callable[[], bool],
    min_alive_s: float = 0.0,
    attempts: int = 5,
    timeout_s: float = 60,
) -> subprocess.Popen[bytes]:
    """Start a second `fanline api|process` and wait until `up()`; start it again when it exits
    first: opening an SQLite store while the first processor holds a long write transaction can
    fail with "database is locked" (SQLiteStore's open waits only briefly)."""
    out = data_dir / f"{args[0]}-2.out"
    for attempt in range(1, attempts + 1):
        process = _extra(data_dir, env, args, out)
        began = time.monotonic()
        while process.poll() is None and time.monotonic() < began + timeout_s:
            if up() and time.monotonic() - began >= min_alive_s:
                return process
            time.sleep(0.2)
        _stop(process)
        time.sleep(attempt)
    raise RuntimeError(f"fanline {args[0]} did not start in {attempts} attempts; see {out}")


def throughput(
    server: Server, tokens: Tokens, options: Options, strategy: str, marker: dict[str, Any]
) -> list[dict[str, Any]]:
    """Posts/s and reads/s on the running server (1 API and 1 processor process), then with a
    second API process and a second processor process beside it (both APIs get requests)."""
    rows = []
    urls = [server.url]
    extras: list[subprocess.Popen[bytes]] = []
    try:
        for workers in (1, 2):
            if workers == 2:
                env = {
                    **os.environ,
                    "FANLINE_STRATEGY": strategy,
                    "FANLINE_SECRET": "",
                    "FANLINE_CELEBRITY_THRESHOLD": str(marker["celebrity_threshold"]),
                }
                port = str(free_port())
                urls.append(f"http://127.0.0.1:{port}")
                api_args = ["api", "--no-world", "--port", port]
                extras.append(_started(server.data_dir, env, api_args, lambda: _ready(urls[1])))
                # A processor is up once it has lived a few seconds (it has no endpoint here).
                extras.append(_started(server.data_dir, env, ["process"], lambda: True, min_alive_s=3.0))
            posts = asyncio.run(
                _drive(urls, tokens, marker["users"], options.throughput_s, options.concurrency, "posts")
            )
            reads = asyncio.run(
                _drive(urls, tokens, marker["users"], options.throughput_s, options.concurrency, "reads")
            )
            rows.append(
                {"api_processes": workers, "processor_processes": workers, "posts": posts, "reads": reads}
            )
    finally:
        for process in extras:
            _stop(process)
    return rows


# --- running them ------------------------------------------------------------------------------


def run_strategy(
    names: Sequence[str], scale: str, strategy: str, options: Options, say: Callable[[str], None] = print
) -> Iterator[dict[str, Any]]:
    """The experiments `names` for one strategy at one scale, in that order, against one server
    (started once: a start costs seconds on a busy machine). Each result is yielded as soon as it
    is measured (a later failure keeps it) with its figures, the world and the machine."""
    for name in names:
        if name not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {name!r}; expected one of {EXPERIMENTS}")
    marker = ensure_worlds(options, scale, [strategy], say)[strategy]
    world = TieredWorld(users_of(scale), seed=SEED)
    tokens = tokens_for(options, scale, strategy)

    def result(name: str, before: dict[str, Any], began: float, figures: Any) -> dict[str, Any]:
        seconds = round(time.monotonic() - began, 1)
        say(f"{name} {scale} {strategy}: {seconds} s")
        return {
            "experiment": name,
            "scale": scale,
            "strategy": strategy,
            "world": dict(marker),
            "machine": before,
            "machine_after": machine(),
            "figures": figures,
            "seconds": seconds,
        }

    if "storage" in names:
        before, began = machine(), time.monotonic()
        yield result("storage", before, began, storage(options, scale, strategy, marker))
    http = [n for n in names if n != "storage"]
    if http:
        starting = time.monotonic()
        with serve(options, scale, strategy, marker) as server:
            say(f"server {scale} {strategy}: ready in {time.monotonic() - starting:.1f} s")
            for name in http:
                before, began = machine(), time.monotonic()
                figures: Any
                if name == "retrieval":
                    figures = asyncio.run(retrieval(server.url, tokens, world, options))
                elif name == "consistency":
                    figures = asyncio.run(consistency(server.url, tokens, world, options))
                else:
                    figures = throughput(server, tokens, options, strategy, marker)
                yield result(name, before, began, figures)
