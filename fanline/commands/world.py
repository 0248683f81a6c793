"""`fanline world --users N --seed S`: generate the tiered world, load it, process it, report it.

The world (load/tiers.py) is appended to the log of the settings with the bulk producer, then
folded into the active projection version (strategy and data directory from the usual
settings; the celebrity threshold is the world's own, the smallest follower count of its top
1 %, unless FANLINE_CELEBRITY_THRESHOLD says otherwise): on the embedded backend, into a store
with nothing applied that no processor is working on, on the bulk path (folded in memory,
the store file written at once, the leases seeded); otherwise, or with --live, by the
processors until caught up (load/loader.py). `tiered-world.json` in the data directory,
written last, records what was loaded, which path folded it and why, and that path's own
figures (`load.loader.Loaded`); a second run on the same directory refuses.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import msgspec

from fanline.settings import Settings, SettingsError
from load.loader import load_events
from load.tiers import TieredWorld, format_distribution

MARKER = "tiered-world.json"
# The marker's keys that describe how its projections were folded (not the world itself): the
# path and why, and each path's figures (load.loader.Loaded).
PROCESSING_KEYS = ("process_s", "process_path", "process_path_why", "posts", "timeline_entries",
                   "items_written", "process_cpu_s", "bulk_workers", "bulk_write_s", "store_rows")


def read_marker(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / MARKER
    if not path.exists():
        return None
    marker: dict[str, Any] = json.loads(path.read_text())
    return marker


def build(settings: Settings, world: TieredWorld, threshold: int | None, progress: bool = True,
          echo: bool = True, live: bool = False) -> dict[str, Any]:
    """Generate, load and process `world` into the settings' backend; the marker written."""
    if read_marker(settings.data_dir) is not None:
        raise click.UsageError(f"{settings.data_dir} already holds a world ({MARKER}); use another data dir")
    began = time.monotonic()
    total = world.event_count()  # draws the graph
    graph_s = time.monotonic() - began
    threshold = threshold or world.celebrity_threshold()
    settings = msgspec.structs.replace(settings, celebrity_threshold=threshold)
    if echo:
        click.echo(f"world: {world.users} users, seed {world.seed}, {total:,} events "
                   f"(graph drawn in {graph_s:.1f} s); strategy {settings.strategy}, "
                   f"celebrity threshold {threshold} followers")
    loaded = asyncio.run(load_events(settings, world.events(), total, progress, live))
    if echo:
        click.echo(f"processed on the {loaded.path} path: {loaded.why}")
    marker = {
        "users": world.users, "seed": world.seed, "posts_per_user": world.posts_per_user,
        "now_ms": world.now_ms, "events": total, "strategy": settings.strategy,
        "celebrity_threshold": threshold, "graph_s": round(graph_s, 1), "append_s": loaded.append_s,
        "process_s": loaded.process_s, "total_s": round(time.monotonic() - began, 1),
        "process_path": loaded.path, "process_path_why": loaded.why, **loaded.figures,
        "distribution": [asdict(s) for s in world.distribution()],
    }
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / MARKER).write_text(json.dumps(marker, indent=1))
    return marker


@click.command()
@click.option("--users", type=click.IntRange(min=3), required=True, help="How many users.")
@click.option("--seed", type=int, default=7, show_default=True, help="The same seed gives the same world.")
@click.option("--posts", "posts_per_user", type=click.IntRange(min=0), default=10, show_default=True,
              help="Posts per user, spread over the week before the world's clock.")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Where the embedded log and store go (default FANLINE_DATA_DIR or ./.fanline).")
@click.option("--strategy", type=click.Choice(["push", "pull", "hybrid"]),
              help="Fan-out strategy of the processors (default FANLINE_STRATEGY or hybrid).")
@click.option("--threshold", type=click.IntRange(min=1),
              help="Celebrity threshold (default: the smallest follower count of the top 1 %).")
@click.option("--live", is_flag=True,
              help="Fold the world with the processors batch by batch, not on the bulk path.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def world(users: int, seed: int, posts_per_user: int, data_dir: Path | None, strategy: str | None,
          threshold: int | None, live: bool, no_progress: bool) -> None:
    """Generate the tiered synthetic world of N users, load it through the log, process it."""
    try:
        settings = Settings.load({"data_dir": data_dir, "strategy": strategy})
        spec = TieredWorld(users=users, seed=seed, posts_per_user=posts_per_user)
    except (SettingsError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    marker = build(settings, spec, threshold, progress=not no_progress, live=live)
    click.echo(format_distribution(spec.distribution()))
    rate = marker["events"] / max(marker["process_s"], 0.1)
    click.echo(f"loaded in {marker['total_s']} s: graph {marker['graph_s']} s, "
               f"append {marker['append_s']} s, process {marker['process_s']} s "
               f"({marker['process_path']} path, {rate:,.0f} events/s)")
    click.echo(f"serve it: FANLINE_STRATEGY={settings.strategy} "
               f"FANLINE_CELEBRITY_THRESHOLD={marker['celebrity_threshold']} "
               f"fanline up --no-world --data-dir {settings.data_dir}")
    click.echo(json.dumps({k: v for k, v in marker.items() if k != "distribution"}))
