"""`fanline experiment NAME --scale 5k|25k|100k --strategy push|pull|hybrid|all`.

Makes the world of each (scale, strategy) once under --worlds (reused afterwards): the world's
log is generated and loaded once (or copied from --world, a directory `fanline world` built),
each strategy's projections replayed from it. Then runs the experiments against `fanline up`
on each world, writes `<out>/<scale>/<name>-<strategy>.json` and prints the figures and how long
each phase took; the last line is one JSON object. `fanline report` turns the results into
tables and plots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from load.capacity import Assumptions, capacity_table
from load.experiments import EXPERIMENTS, SCALES, STRATEGIES, Options, ensure_worlds, run_strategy, users_of


def _summary(result: dict[str, Any]) -> str:
    figures = result["figures"]
    name = result["experiment"]
    if name == "retrieval":
        return "; ".join(
            f"following {r['following']}: p50 {r['p50']} p95 {r['p95']} p99 {r['p99']} ms, "
            f"{r['page_bytes']} B, {r['failures']} failed"
            for r in figures
        )
    if name == "consistency":
        return "visible at " + ", ".join(
            f"{s:g}s {v:.0%}"
            for s, v in zip(figures["checkpoints_s"], figures["visible_fraction"], strict=True)
        )
    if name == "storage":
        tables = ", ".join(
            f"{t} {v['items']:,} items {v['bytes'] / 1e6:.1f} MB"
            for t, v in figures["tables"].items()
            if v["items"]
        )
        return f"{tables}; write amplification {figures['write_amplification']} timeline items per post"
    return "; ".join(
        f"{r['api_processes']} API + {r['processor_processes']} processor: "
        f"{r['posts']['per_s']} posts/s, {r['reads']['per_s']} reads/s"
        for r in figures
    )


def measured_assumptions(out: Path) -> Assumptions:
    """The graph-dependent assumptions from the largest scale with storage results for both
    push and hybrid (the defaults when there is none)."""

    def amplification(scale: str, strategy: str) -> float | None:
        path = out / scale / f"storage-{strategy}.json"
        if not path.exists():
            return None
        value = json.loads(path.read_text())["figures"]["write_amplification"]
        return float(value) if value is not None else None

    for scale in reversed(SCALES):
        push, hybrid = amplification(scale, "push"), amplification(scale, "hybrid")
        if push and hybrid is not None and push > 1:
            # push - 1 is the mean followers per post, hybrid - 1 the non-celebrity ones among them.
            share = round(1 - (hybrid - 1) / (push - 1), 3)
            base = Assumptions()
            return Assumptions(
                celebrity_edge_share=share,
                measured_at_scale=scale,
                celebrities_followed=round(share * base.mean_following, 1),
            )
    return Assumptions()


@click.command()
@click.argument("name", type=click.Choice([*EXPERIMENTS, "all"]))
@click.option("--scale", type=click.Choice(list(SCALES)), default="5k", show_default=True)
@click.option("--strategy", type=click.Choice([*STRATEGIES, "all"]), default="all", show_default=True)
@click.option(
    "--worlds",
    type=click.Path(path_type=Path),
    default=Path(".fanline-worlds"),
    show_default=True,
    help="Where each scale's world is built once per strategy and kept.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("reports/raw"),
    show_default=True,
    help="Where the JSON results go (`fanline report --results` reads them).",
)
@click.option(
    "--world",
    "prebuilt",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A world of this scale built by `fanline world` (seed 7) to copy instead of generating "
    "one; only read.",
)
@click.option("--quick", is_flag=True, help="Fewer reads and probes (a smoke run).")
def experiment(
    name: str, scale: str, strategy: str, worlds: Path, out: Path, prebuilt: Path | None, quick: bool
) -> None:
    """Run an experiment (or all four) at a scale for a strategy (or all three)."""
    options = Options(worlds=worlds, prebuilt=prebuilt)
    if quick:
        options = Options(
            worlds=worlds,
            prebuilt=prebuilt,
            readers_per_bucket=2,
            reads_per_reader=10,
            probes=3,
            throughput_s=3.0,
        )
    run(name, scale, strategy, options, out)


def run(name: str, scale: str, strategy: str, options: Options, out: Path) -> list[dict[str, Any]]:
    names = EXPERIMENTS if name == "all" else (name,)
    strategies = STRATEGIES if strategy == "all" else (strategy,)
    users_of(scale)  # refuses an unknown scale before any work
    began = time.monotonic()
    results = []
    (out / scale).mkdir(parents=True, exist_ok=True)
    # Every world first, so that making them is timed apart from the experiments.
    ensure_worlds(options, scale, strategies, say=click.echo)
    phases = {"worlds": round(time.monotonic() - began, 1)}
    click.echo(f"worlds {scale}: {phases['worlds']} s")
    for strategy_name in strategies:
        started = time.monotonic()
        for result in run_strategy(names, scale, strategy_name, options, say=click.echo):
            path = out / scale / f"{result['experiment']}-{strategy_name}.json"
            path.write_text(json.dumps(result, indent=1))
            click.echo(f"  {_summary(result)}")
            results.append(result)
        phases[strategy_name] = round(time.monotonic() - started, 1)
    if "throughput" in names:
        table = capacity_table(measured_assumptions(out))
        (out / "capacity.json").write_text(json.dumps(table, indent=1))
        for row in table["rows"]:
            click.echo(
                f"  AWS model, {row['users']:,} users, {row['strategy']}: {row['kinesis_shards']} shards, "
                f"{row['peak_write_units_s']:,} WCU/s and {row['peak_read_units_s']:,} RCU/s at peak, "
                f"${row['monthly_usd_total']:,.0f}/month"
            )
    summary = {
        "scale": scale,
        "experiments": list(names),
        "strategies": list(strategies),
        "seconds": round(time.monotonic() - began, 1),
        "phases_s": phases,
        "results": str(out / scale),
    }
    click.echo(json.dumps(summary))
    return results
