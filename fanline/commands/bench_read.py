"""`fanline bench read`: timelines served per second over HTTP, against the same server's ceiling.

A world of N users (5000; built once into --data-dir by F1's generator and the Runner, hybrid
fan-out, reused afterwards) is served by the real app under uvicorn in a child process. wrk (2
threads, 32 connections, its own process) asks for 50-item timelines of readers drawn across
the world with a producer token, then for a bench-only route answering a static 50-item page of
the same bytes from the same server. They alternate in slices so load on the shared machine
hits both alike.

Figures: timeline_rps, p50_ms and p99_ms of the timeline route, ceiling_rps of the static page,
ratio = timeline_rps / ceiling_rps, and empty_pages (pages with no item; they would flatter the
route). The server keeps pages while their feed stamp holds (api.timeline_cache), and nothing
is written during the bench, so after the first read of each reader's page nearly every page
comes from that cache: `cache_hit_ratio` says how many did, and a second server with no page
cache gives the same route's figures when every page is read from the store (`uncached_rps`,
`uncached_p99_ms`, `uncached_ratio` against that server's own static page). The last line
printed is one JSON object.

With --suggestions, then who-to-follow (issue 10): suggestions from the embedded graph
projection against the Store's follow lists (the route's answer without a graph) for
SUGGESTION_READERS of the readers, in this process (fanline.benchmarks.suggestions):
`suggestions_*` figures, and every answer of the graph compared with the Store's
(`suggestions_mismatches`). It is opt-in because the first run builds the embedded graph from
the log (minutes on the 5K world), past this bench's 60-second budget.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import statistics
from pathlib import Path

import click
import msgspec

from api.auth import Tokens
from fanline.benchmarks.read_world import WorldInfo, build_world, store_path
from fanline.benchmarks.suggestions import figures_dict, measure
from fanline.benchmarks.wrk import (
    WrkResult,
    api_server,
    lua_strings,
    metric_values,
    profiled_load,
    require_wrk,
    run_wrk,
)
from load.world import user_id
from projections.sqlite_store import SQLiteStore
from projections.timeline import TimelineReader

PAGE = 50
SUGGESTION_READERS = 300
STATIC_PATH = "/bench/static-page"
PAGES_FROM_CACHE = 'fanline_timeline_pages_total{source="cache"}'
PAGES_FROM_STORE = 'fanline_timeline_pages_total{source="store"}'

SCRIPT = """
local readers = %(readers)s
local auth = {Authorization = "Bearer %(token)s"}
local idx = 0
function init(args)
  counted = 0
  idx = (tid or 0) * 7919
end
function request()
  idx = idx %% #readers + 1
  return wrk.format("GET", "%(prefix)s" .. readers[idx] .. "%(suffix)s", auth)
end
function response(status, headers, body)
  if status == 200 and string.find(body, '"items":[]', 1, true) then counted = counted + 1 end
end
"""


async def _sample_page(data_dir: Path, readers: list[str]) -> bytes:
    """A real full page of the world, encoded as the route encodes it: the static page's bytes."""
    store = SQLiteStore(store_path(data_dir))
    try:
        timelines = TimelineReader(store, "hybrid")
        for reader in readers:
            page = await timelines.page(reader, PAGE)
            if len(page.items) == PAGE:
                return msgspec.json.encode(page)
    finally:
        await store.close()
    raise click.ClickException("no reader of the world has a full page; the world is too small")


def _script(readers: list[str], token: str, prefix: str, suffix: str) -> str:
    return SCRIPT % {"readers": lua_strings(readers), "token": token, "prefix": prefix, "suffix": suffix}


def _combine(results: list[WrkResult]) -> tuple[float, float, float]:
    """rps over all slices; the median slice's p50 and the worst slice's p99."""
    rps = sum(r.requests for r in results) / sum(r.seconds for r in results)
    return rps, statistics.median(r.p50_ms for r in results), max(r.p99_ms for r in results)


@click.command("read")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path(".fanline/bench-read"), show_default=True, help="where the world is kept")
@click.option("--users", default=5000, show_default=True)
@click.option("--readers", "reader_count", default=1000, show_default=True,
              help="readers drawn across the world")
@click.option("--seconds", default=5.0, show_default=True, help="length of each measured slice")
@click.option("--slices", default=2, show_default=True, help="slices per side, alternating")
@click.option("--profile", "profile_to", type=click.Path(path_type=Path, dir_okay=False),
              help="after measuring, sample the server with py-spy under load into this file")
@click.option("--suggestions/--no-suggestions", default=False, show_default=True,
              help="also measure who-to-follow on the embedded graph (builds it on first use: slow)")
def bench_read(
    data_dir: Path, users: int, reader_count: int, seconds: float, slices: int, profile_to: Path | None,
    suggestions: bool,
) -> None:
    """Timelines per second over HTTP (wrk) against a static page of the same size."""
    require_wrk()
    info: WorldInfo = asyncio.run(build_world(data_dir, users))
    click.echo(f"world: {info}")
    readers = random.Random(1).sample([user_id(i) for i in range(users)], min(reader_count, users))
    static_page = asyncio.run(_sample_page(data_dir, readers))
    secret = secrets.token_urlsafe(32)
    token = Tokens(secret).issue("bench-reader", "producer")
    timeline_script = _script(readers, token, "/v1/users/", f"/timeline?limit={PAGE}")
    static_script = _script(readers, token, f"{STATIC_PATH}?reader=", "")
    timeline: list[WrkResult] = []
    ceiling: list[WrkResult] = []
    statics = [("GET", STATIC_PATH, static_page, 200)]
    with api_server(data_dir, secret, statics) as server:
        run_wrk(server.url, timeline_script, 2)  # warm-up: connections, caches, page cache
        for _ in range(slices):
            ceiling.append(run_wrk(server.url, static_script, seconds))
            timeline.append(run_wrk(server.url, timeline_script, seconds))
        pages = metric_values(server.url, (PAGES_FROM_CACHE, PAGES_FROM_STORE))
        if profile_to is not None:
            click.echo(profiled_load(server, timeline_script, seconds, profile_to))
    # The same route with no page kept (every page read from the store), beside its own ceiling.
    with api_server(data_dir, secret, statics, page_cache_mib=0) as server:
        run_wrk(server.url, timeline_script, 1)
        uncached_ceiling = run_wrk(server.url, static_script, seconds)
        uncached = run_wrk(server.url, timeline_script, seconds)
    for name, results in (("timeline", timeline), ("static page", ceiling),
                          ("timeline, no page cache", [uncached]), ("static page", [uncached_ceiling])):
        for r in results:
            click.echo(f"{name}: {r.rps:.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, "
                       f"{r.requests} requests, {r.status_errors} non-2xx, {r.socket_errors} socket errors")
    timeline_rps, p50, p99 = _combine(timeline)
    ceiling_rps, _, _ = _combine(ceiling)
    figures = {
        "timeline_rps": round(timeline_rps, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "ceiling_rps": round(ceiling_rps, 1),
        "ratio": round(timeline_rps / ceiling_rps, 3),
        "pages": sum(r.requests for r in timeline),
        "empty_pages": sum(r.counted for r in timeline),
        "errors": sum(r.status_errors + r.socket_errors for r in timeline + ceiling),
        "page_bytes": len(static_page),
        # Pages answered from the API's page cache (api.timeline_cache) over the whole run.
        "cache_hit_ratio": round(pages[PAGES_FROM_CACHE] / max(1.0, sum(pages.values())), 3),
        "uncached_rps": round(uncached.rps, 1),
        "uncached_p99_ms": round(uncached.p99_ms, 2),
        "uncached_ratio": round(uncached.rps / uncached_ceiling.rps, 3),
        "users": info.users,
    }
    click.echo(f"targets: ratio >= 0.5 ({'met' if figures['ratio'] >= 0.5 else 'MISSED'}), "
               f"p99_ms <= 10 ({'met' if p99 <= 10 else 'MISSED'})")
    if suggestions:
        _measure_suggestions(data_dir, readers, figures)
    click.echo(json.dumps(figures))


def _measure_suggestions(data_dir: Path, readers: list[str], figures: dict[str, float | int]) -> None:
    sug = asyncio.run(measure(data_dir, readers[:SUGGESTION_READERS]))
    click.echo(f"suggestions (limit 10, {sug.readers} readers, in process): graph p50 {sug.graph_p50_ms} ms, "
               f"p99 {sug.graph_p99_ms} ms; store follow lists p50 {sug.store_p50_ms} ms, "
               f"p99 {sug.store_p99_ms} ms; {sug.mismatches} answers differ; "
               f"graph built in {sug.graph_build_s} s")
    figures.update(figures_dict(sug))
    # Above 1: the graph answers faster than the Store's follow lists (p50 over p50).
    figures["suggestions_store_over_graph_p50"] = round(sug.store_p50_ms / sug.graph_p50_ms, 3)
