"""`fanline soak --minutes N`: the mixed workload at a set rate against a running `fanline up`.

Without --url it starts `fanline up --world 300` itself (a child, stopped by its pid, in a temp
data directory unless --data-dir), waits until the processors have caught up with the world, and
acts as the world's users with their own tokens. With --url it needs a --token (producer scope: it
acts for the world's users with actor_id) and, for the memory figures, the API's --api-pid.

The workload, opened at --rate requests per second whatever the answers take (an open loop, so a
slow server shows as latency, not as a lower rate): timeline reads (60 %), posts (12 %), profile
reads (10 %), post lists (10 %), follows (5 %), unfollows (3 %); one post in ten is read back with
its consistency token (how long until a write is visible). A /healthz probe now and then is the
baseline: the server's own floor, in the same run. Every 5 s: the API process's RSS and the
processors' lag (records and ms behind, from /v1/pipeline).

Prints errors (any answer but 2xx, or no answer: must be 0; the exit status is 1 otherwise),
latency percentiles, the write-to-visible p99, lag, and the RSS at start and end; last, one JSON
object.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

from api.auth import Tokens
from fanline.emulators import free_port
from load.world import user_id

WORLD_USERS = 300
SAMPLE_EVERY_S = 5.0
MAX_IN_FLIGHT = 256
START_TIMEOUT_S = 180.0
MIX: list[tuple[str, int]] = [
    ("timeline", 60), ("post", 12), ("profile", 10), ("posts", 10), ("follow", 5), ("unfollow", 3),
]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Figures:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    visible_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    rss: list[float] = field(default_factory=list)
    behind: list[int] = field(default_factory=list)
    millis_behind: list[int] = field(default_factory=list)
    sent: int = 0

    def record(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds * 1000)


class Workload:
    def __init__(self, client: httpx.AsyncClient, figures: Figures, auth: Callable[[str], dict[str, str]],
                 act_as: bool, users: int, rng: random.Random) -> None:
        self.client, self.figures, self.auth, self.act_as = client, figures, auth, act_as
        self.users = [user_id(i) for i in range(1, users)]
        self.rng = rng
        self.posts = 0

    async def call(
        self, kind: str, method: str, path: str, me: str | None, **kwargs: Any
    ) -> httpx.Response | None:
        headers = self.auth(me) if me else {}
        start = time.perf_counter()
        try:
            answer = await self.client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            self.figures.errors[f"{kind}: {type(exc).__name__}"] += 1
            return None
        self.figures.record(kind, time.perf_counter() - start)
        if not 200 <= answer.status_code < 300:
            self.figures.errors[f"{kind}: {answer.status_code} {answer.text[:120]}"] += 1
            return None
        return answer

    def body(self, me: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {**fields, "actor_id": me} if self.act_as else fields

    async def one(self) -> None:
        me = self.rng.choice(self.users)
        other = self.rng.choice([u for u in self.rng.sample(self.users, 2) if u != me])
        kind = self.rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        if self.rng.random() < 0.05:
            await self.call("healthz (baseline)", "GET", "/healthz", None)
        elif kind == "timeline":
            await self.call(kind, "GET", f"/v1/users/{me}/timeline", me, params={"limit": 20})
        elif kind == "profile":
            await self.call(kind, "GET", f"/v1/users/{other}", me)
        elif kind == "posts":
            await self.call(kind, "GET", f"/v1/users/{other}/posts", me, params={"limit": 20})
        elif kind == "follow":
            await self.call(kind, "POST", "/v1/follows", me, json=self.body(me, {"followee_id": other}))
        elif kind == "unfollow":
            await self.call(kind, "DELETE", f"/v1/follows/{other}", me, json=self.body(me, {}))
        else:
            await self.post(me)

    async def post(self, me: str) -> None:
        self.posts += 1
        start = time.perf_counter()
        text = f"soak post {self.posts} {secrets.token_hex(4)}"
        answer = await self.call("post", "POST", "/v1/posts", me, json=self.body(me, {"body": text}))
        if answer is None or self.posts % 10:
            return
        token = answer.json()["consistency_token"]
        # The author's own timeline holds the post once it is folded (consistent_after waits for it).
        read = await self.call("read back", "GET", f"/v1/users/{me}/timeline", me,
                               params={"limit": 1, "consistent_after": token})
        if read is not None:
            if read.headers.get("x-fanline-stale") == "true":
                self.figures.errors["read back: stale after the consistency wait"] += 1
            self.figures.visible_ms.append((time.perf_counter() - start) * 1000)


async def _sample(client: httpx.AsyncClient, figures: Figures, api_pid: int | None) -> None:
    rss = rss_mb(api_pid)
    if rss is not None:
        figures.rss.append(rss)
    try:
        shards = (await client.get("/v1/pipeline")).json()["shards"]
        figures.behind.append(sum(s["behind"] for s in shards))
        figures.millis_behind.append(max((s["millis_behind"] for s in shards), default=0))
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        figures.errors[f"pipeline: {type(exc).__name__}"] += 1


async def drive(url: str, auth: Callable[[str], dict[str, str]], act_as: bool, rate: float, seconds: float,
                api_pid: int | None, seed: int = 1) -> Figures:
    figures = Figures()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:
        work = Workload(client, figures, auth, act_as, WORLD_USERS, random.Random(seed))
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()

        async def bounded() -> None:
            async with in_flight:
                await work.one()

        await _sample(client, figures, api_pid)
        start = time.monotonic()
        next_sample = start + SAMPLE_EVERY_S
        while (now := time.monotonic()) < start + seconds:
            due = int((now - start) * rate) - figures.sent
            for _ in range(max(0, due)):
                figures.sent += 1
                task = asyncio.create_task(bounded())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if now >= next_sample:
                next_sample += SAMPLE_EVERY_S
                await _sample(client, figures, api_pid)
            await asyncio.sleep(min(0.01, 1 / rate))
        await asyncio.gather(*tasks)
        await _sample(client, figures, api_pid)
    return figures


# --- running fanline up ------------------------------------------------------------------------------


@contextmanager
def running_up(data_dir: Path, secret: str) -> Iterator[tuple[str, int]]:
    """`fanline up --world 300` on a free port, until it is ready and caught up; (url, pid)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANLINE_")}
    env.update(FANLINE_SECRET=secret, FANLINE_DATA_DIR=str(data_dir))
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "up.log").open("ab") as sink:
        server = subprocess.Popen(
            [sys.executable, "-c", "from fanline.cli import main; main()", "up", "--world", str(WORLD_USERS),
             "--port", str(port)], env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_caught_up(url, server)
        yield url, server.pid
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait()


def _wait_caught_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise click.ClickException(f"fanline up exited with {server.returncode} (see its up.log)")
        try:
            shards = httpx.get(f"{url}/v1/pipeline", timeout=5).json()["shards"]
            if shards and all(s["behind"] == 0 for s in shards):
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise click.ClickException(f"fanline up was not caught up within {START_TIMEOUT_S:g} s")


def report(figures: Figures, minutes: float, rate: float) -> dict[str, Any]:
    every = [ms for kind, values in figures.latencies.items() if kind != "healthz (baseline)"
             for ms in values]
    baseline = figures.latencies.get("healthz (baseline)", [])
    p99, base_p99 = percentile(every, 0.99), percentile(baseline, 0.99)
    errors = sum(figures.errors.values())
    rss_start = figures.rss[0] if figures.rss else None
    rss_end = figures.rss[-1] if figures.rss else None
    for kind, values in sorted(figures.latencies.items()):
        click.echo(f"  {kind:20} n={len(values):7d}  p50={percentile(values, 0.5):7.1f} ms"
                   f"  p99={percentile(values, 0.99):7.1f} ms")
    for what, count in figures.errors.most_common(10):
        click.echo(f"  error x{count}: {what}")
    click.echo(f"requests: {figures.sent} in {minutes:g} min at {rate:g}/s; errors: {errors}")
    click.echo(f"latency: p50 {percentile(every, 0.5):.1f} ms, p99 {p99:.1f} ms; baseline /healthz p99"
               f" {base_p99:.1f} ms (ratio {p99 / base_p99 if base_p99 else 0:.1f})")
    click.echo(f"write visible (post then read with its consistency token): p99 "
               f"{percentile(figures.visible_ms, 0.99):.1f} ms over {len(figures.visible_ms)}")
    click.echo(f"processor lag: max {max(figures.behind, default=0)} records / "
               f"{max(figures.millis_behind, default=0)} ms behind; at the end "
               f"{figures.behind[-1] if figures.behind else 0} records")
    if rss_start is not None and rss_end is not None:
        click.echo(f"API RSS: {rss_start:.1f} MB at start, {rss_end:.1f} MB at the end,"
                   f" max {max(figures.rss):.1f} MB (end/start {rss_end / rss_start:.2f})")
    return {
        "minutes": minutes, "rate_per_s": rate, "requests": figures.sent, "errors": errors,
        "p50_ms": round(percentile(every, 0.5), 2), "p99_ms": round(p99, 2),
        "baseline_healthz_p99_ms": round(base_p99, 2), "p99_ratio_to_baseline": round(p99 / base_p99, 2)
        if base_p99 else None,
        "visible_p99_ms": round(percentile(figures.visible_ms, 0.99), 1),
        "lag_max_records": max(figures.behind, default=0), "lag_end_records": figures.behind[-1]
        if figures.behind else None, "lag_max_ms": max(figures.millis_behind, default=0),
        "rss_start_mb": rss_start, "rss_end_mb": rss_end, "rss_max_mb": max(figures.rss, default=None),
    }


@click.command()
@click.option("--minutes", type=click.FloatRange(min=0.05), default=10.0, show_default=True)
@click.option("--rate", type=click.FloatRange(min=1), default=50.0, show_default=True,
              help="Requests per second, whatever the answers take.")
@click.option("--url", help="A running fanline (default: start `fanline up --world 300` here).")
@click.option("--token", help="With --url: a producer token (`fanline token soak --producer`).")
@click.option("--api-pid", type=int, help="With --url: the API process, for its RSS.")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Without --url: where fanline up keeps its data (default: a temp directory).")
def soak(minutes: float, rate: float, url: str | None, token: str | None, api_pid: int | None,
         data_dir: Path | None) -> None:
    """Drive the mixed workload at --rate for --minutes; print errors, p99, lag and the API's RSS."""
    if url is not None and token is None:
        raise click.UsageError("--url needs --token (a producer token)")
    if url is not None:
        header = {"Authorization": f"Bearer {token}"}
        figures = asyncio.run(drive(url, lambda me: header, True, rate, minutes * 60, api_pid))
    else:
        secret = secrets.token_urlsafe(32)
        tokens = Tokens(secret)
        minted: dict[str, dict[str, str]] = {}

        def auth(me: str) -> dict[str, str]:
            if me not in minted:
                minted[me] = {"Authorization": f"Bearer {tokens.issue(me)}"}
            return minted[me]

        with (tempfile.TemporaryDirectory(prefix="fanline-soak-") as scratch,
              running_up(data_dir or Path(scratch) / "data", secret) as (up_url, pid)):
            click.echo(f"fanline up (pid {pid}) at {up_url}, caught up with its world; soaking ...")
            figures = asyncio.run(drive(up_url, auth, False, rate, minutes * 60, pid))
    answer = report(figures, minutes, rate)
    click.echo(json.dumps(answer))
    if answer["errors"]:
        sys.exit(1)
