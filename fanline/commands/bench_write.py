"""`fanline bench write`: posts accepted over HTTP per second, against the same server's ceiling.

The real app under uvicorn in a child process, on a fresh SQLite data directory (removed at the
end). wrk (2 threads, 32 connections, its own process) POSTs /v1/posts with a producer token and
an actor_id rotating over 1000 users, then a bench-only route answering a static 202 of the same
shape from the same server; they alternate in slices. A post counts only when answered 202,
which the API sends once the event is durably in the log; afterwards the log is read back and
must hold at least that many posts (a few more: requests wrk stopped waiting for at the end).

Figures: posts_per_s, p50_ms, p99_ms, ceiling_rps, ratio = posts_per_s / ceiling_rps, and the
appends the server made for the measured posts (from its /metrics: the append batcher's batch
size histogram) with their mean batch size. The last line printed is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import tempfile
from pathlib import Path

import click
import msgspec

from api.auth import Tokens
from api.consistency import encode_token
from api.write import new_id
from fanline.benchmarks.wrk import (
    WrkResult,
    api_server,
    append_batches,
    lua_strings,
    profiled_load,
    require_wrk,
    run_wrk,
)
from streams.log import Position
from streams.sqlite_log import SQLiteLog

STATIC_PATH = "/bench/static-post"
ACTORS = [f"w{i:06d}" for i in range(1000)]

SCRIPT = """
local actors = %(actors)s
local headers = {Authorization = "Bearer %(token)s", ["Content-Type"] = "application/json"}
local idx = 0
local n = 0
function init(args)
  counted = 0
  idx = (tid or 0) * 7919
end
function request()
  idx = idx %% #actors + 1
  n = n + 1
  local body = '{"body":"bench post ' .. n .. ' of thread ' .. (tid or 0) ..
    ', about as long as a short post usually is","actor_id":"' .. actors[idx] .. '"}'
  return wrk.format("POST", "%(path)s", headers, body)
end
function response(status, headers, body)
  if status == 202 then counted = counted + 1 end
end
"""


def _script(token: str, path: str) -> str:
    return SCRIPT % {"actors": lua_strings(ACTORS), "token": token, "path": path}


async def _posts_in_log(data_dir: Path) -> int:
    log = SQLiteLog(data_dir / "log.db", shard_count=4)
    try:
        total = 0
        for shard in await log.shards():
            reader = log.reader(shard.shard_id, Position.trim_horizon())
            while records := (await reader.read(10_000)).records:
                total += len(records)
        return total
    finally:
        await log.close()


def _combine(results: list[WrkResult], counted: bool) -> tuple[float, float, float]:
    done = sum(r.counted if counted else r.requests for r in results)
    return (done / sum(r.seconds for r in results), statistics.median(r.p50_ms for r in results),
            max(r.p99_ms for r in results))


@click.command("write")
@click.option("--seconds", default=5.0, show_default=True, help="length of each measured slice")
@click.option("--slices", default=2, show_default=True, help="slices per side, alternating")
@click.option("--profile", "profile_to", type=click.Path(path_type=Path, dir_okay=False),
              help="after measuring, sample the server with py-spy under load into this file")
def bench_write(seconds: float, slices: int, profile_to: Path | None) -> None:
    """Posts accepted per second over HTTP (wrk) against a static 202 from the same server."""
    require_wrk()
    secret = secrets.token_urlsafe(32)
    token = Tokens(secret).issue("bench-writer", "producer")
    # The static answer has the real one's shape and size: two ids and a consistency token.
    static = msgspec.json.encode({"event_id": new_id(), "post_id": new_id(),
                                  "consistency_token": encode_token("shardId-000000000001", str(2**61))})
    posts: list[WrkResult] = []
    ceiling: list[WrkResult] = []
    with tempfile.TemporaryDirectory(prefix="fanline-bench-write-") as scratch:
        data_dir = Path(scratch)
        with api_server(data_dir, secret, [("POST", STATIC_PATH, static, 202)]) as server:
            warm_up = run_wrk(server.url, _script(token, "/v1/posts"), 1)
            appends_before, records_before = append_batches(server.url)
            for _ in range(slices):
                ceiling.append(run_wrk(server.url, _script(token, STATIC_PATH), seconds))
                posts.append(run_wrk(server.url, _script(token, "/v1/posts"), seconds))
            appends_after, records_after = append_batches(server.url)
            if profile_to is not None:
                click.echo(profiled_load(server, _script(token, "/v1/posts"), seconds, profile_to))
        in_log = asyncio.run(_posts_in_log(data_dir))
    accepted = warm_up.counted + sum(r.counted for r in posts)
    for name, results in (("posts", posts), ("static 202", ceiling)):
        for r in results:
            click.echo(f"{name}: {r.counted / r.seconds:.0f} answered 202/s, p50 {r.p50_ms:.2f} ms, "
                       f"p99 {r.p99_ms:.2f} ms, {r.requests} requests, {r.status_errors} non-2xx, "
                       f"{r.socket_errors} socket errors")
    appends = appends_after - appends_before
    mean_batch = (records_after - records_before) / appends if appends else 0.0
    click.echo(f"appends while measuring: {appends:.0f}, {mean_batch:.1f} records each on average")
    click.echo(f"log holds {in_log} events for {accepted} posts answered 202 "
               f"({in_log - accepted} appended while wrk was stopping, their answers unread)")
    posts_per_s, p50, p99 = _combine(posts, counted=True)
    ceiling_rps, _, _ = _combine(ceiling, counted=True)
    figures = {
        "posts_per_s": round(posts_per_s, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "ceiling_rps": round(ceiling_rps, 1),
        "ratio": round(posts_per_s / ceiling_rps, 3),
        "accepted": accepted,
        "in_log": in_log,
        "errors": sum(r.status_errors + r.socket_errors for r in posts + ceiling),
        "appends": round(appends),
        "mean_batch_records": round(mean_batch, 1),
    }
    click.echo(f"target: posts_per_s >= 5000 ({'met' if posts_per_s >= 5000 else 'MISSED'}); "
               f"every accepted post in the log: {'yes' if in_log >= accepted else 'NO'}")
    click.echo(json.dumps(figures))
