"""The report: tables and PNG plots (matplotlib, Agg) of every experiment result found.

`write_report(results, out)` reads `<results>/<scale>/<experiment>-<strategy>.json` (and
`<results>/capacity.json`), writes one PNG per experiment and scale into `out` and a README.md
that shows them with their tables, the worlds and the machine they ran on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

STRATEGY_ORDER = ("push", "pull", "hybrid")
COLOURS = {"push": "tab:blue", "pull": "tab:orange", "hybrid": "tab:green"}
SCALE_ORDER = ("5k", "25k", "100k")


def load_results(results: Path) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{scale: {experiment: {strategy: result}}}."""
    found: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for path in sorted(results.glob("*/*-*.json")):
        result = json.loads(path.read_text())
        found.setdefault(result["scale"], {}).setdefault(result["experiment"], {})[result["strategy"]] = (
            result
        )
    return found


def _ordered(by_strategy: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    return ((s, by_strategy[s]) for s in STRATEGY_ORDER if s in by_strategy)


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


# --- plots -------------------------------------------------------------------------------------


def plot_retrieval(scale: str, runs: dict[str, dict[str, Any]], out: Path) -> str:
    """One panel per percentile; the readers' buckets on a categorical axis (at 5k the largest
    following is 500 itself, so a numeric axis would put two buckets on one point)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), sharey=True)
    for ax, pct in zip(axes, ("p50", "p95", "p99"), strict=True):
        labels: list[str] = []
        for strategy, result in _ordered(runs):
            rows = result["figures"]
            labels = [f"{r['target']}\n({r['following']})" for r in rows]
            ax.plot(
                range(len(rows)), [r[pct] for r in rows], marker="o", color=COLOURS[strategy], label=strategy
            )
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel("reader's followees: target (actual)")
        ax.set_title(f"{pct}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("timeline read latency (ms)")
    axes[0].legend(title="strategy")
    fig.suptitle(f"Timeline read latency (first page of 50) by following count, {scale} users")
    return _save(fig, out / f"retrieval-{scale}.png")


def plot_consistency(scale: str, runs: dict[str, dict[str, Any]], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for strategy, result in _ordered(runs):
        f = result["figures"]
        ax.plot(
            [s * 1000 for s in f["checkpoints_s"]],
            [v * 100 for v in f["visible_fraction"]],
            marker="o",
            color=COLOURS[strategy],
            label=strategy,
        )
    ax.set_xscale("log")
    # Ticks at the checkpoints themselves (a log axis alone labels only 10^2 and 10^3).
    checkpoints_ms = sorted({s * 1000 for r in runs.values() for s in r["figures"]["checkpoints_s"]})
    labels = [f"{ms:g} ms" if ms < 1000 else f"{ms / 1000:g} s" for ms in checkpoints_ms]
    ax.set_xticks(checkpoints_ms, labels)
    ax.minorticks_off()
    ax.set_ylim(0, 105)
    ax.set_xlabel("time after the post was accepted (log scale)")
    ax.set_ylabel("followers whose timeline shows it (%)")
    ax.set_title(f"Visibility of a new post to its author's followers, {scale} users")
    ax.grid(True, alpha=0.3)
    ax.legend(title="strategy")
    return _save(fig, out / f"consistency-{scale}.png")


def plot_storage(scale: str, runs: dict[str, dict[str, Any]], out: Path) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    strategies = [s for s, _ in _ordered(runs)]
    tables = sorted({t for r in runs.values() for t, v in r["figures"]["tables"].items() if v["items"]})
    width = 0.8 / max(1, len(strategies))
    for k, strategy in enumerate(strategies):
        sizes = runs[strategy]["figures"]["tables"]
        left.bar(
            [i + k * width for i in range(len(tables))],
            [sizes.get(t, {"bytes": 0})["bytes"] / 1e6 for t in tables],
            width,
            color=COLOURS[strategy],
            label=strategy,
        )
    left.set_xticks(
        [i + width * (len(strategies) - 1) / 2 for i in range(len(tables))], tables, rotation=30, ha="right"
    )
    left.set_ylabel("size on disk (MB, table and its indexes)")
    left.set_title(f"Projection tables, {scale} users")
    left.set_xlabel("projection table")
    left.legend(title="strategy")
    amplification = [runs[s]["figures"]["write_amplification"] or 0 for s in strategies]
    right.bar(strategies, amplification, color=[COLOURS[s] for s in strategies])
    right.set_ylabel("timeline items written per post")
    right.set_xlabel("strategy")
    right.set_title("Write amplification")
    return _save(fig, out / f"storage-{scale}.png")


def plot_throughput(scale: str, runs: dict[str, dict[str, Any]], out: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    strategies = [s for s, _ in _ordered(runs)]
    width = 0.35
    for ax, kind, unit in (
        (axes[0], "posts", "accepted posts/s"),
        (axes[1], "reads", "good timeline reads/s"),
    ):
        for k, workers in enumerate((1, 2)):
            values = [
                next((r[kind]["per_s"] for r in runs[s]["figures"] if r["api_processes"] == workers), 0)
                for s in strategies
            ]
            ax.bar(
                [i + k * width for i in range(len(strategies))],
                values,
                width,
                label=f"{workers} API + {workers} processor process{'es' if workers > 1 else ''}",
                color=["tab:gray", "tab:purple"][k],
            )
        ax.set_xticks([i + width / 2 for i in range(len(strategies))], strategies)
        ax.set_xlabel("strategy")
        ax.set_ylabel(unit)
        ax.set_title(f"{unit}, {scale} users")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # room for the legend above the bars
        ax.legend(fontsize=8)
    return _save(fig, out / f"throughput-{scale}.png")


def plot_capacity(capacity: dict[str, Any], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    rows = capacity["rows"]
    users = sorted({r["users"] for r in rows})
    width = 0.25
    for k, strategy in enumerate(STRATEGY_ORDER):
        values = [
            next(r["monthly_usd_total"] for r in rows if r["users"] == n and r["strategy"] == strategy)
            for n in users
        ]
        ax.bar(
            [i + k * width for i in range(len(users))], values, width, color=COLOURS[strategy], label=strategy
        )
    ax.set_xticks([i + width for i in range(len(users))], [f"{n:,} users" for n in users])
    ax.set_yscale("log")
    ax.set_xlabel("users served")
    ax.set_ylabel("USD per month (log scale)")
    ax.set_title("AWS cost on paper: Kinesis + DynamoDB on-demand")
    ax.legend(title="strategy")
    return _save(fig, out / "capacity.png")


# --- tables ------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _world_section(scale: str, experiments: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    first = next(r for runs in experiments.values() for r in runs.values())
    world = first["world"]
    lines = [
        f"World: {world['users']:,} users, seed {world['seed']}, {world['events']:,} events, "
        f"{world['posts_per_user']} posts per user over a week. Celebrity threshold (the smallest "
        f"follower count of the top 1 %, as DESIGN.md asks at every scale): "
        f"**{world['celebrity_threshold']} followers**.",
        "",
    ]
    rows = [
        [
            d["tier"],
            d["users"],
            *(d["followers"][k] for k in ("min", "median", "p99", "max")),
            *(d["following"][k] for k in ("min", "median", "p99", "max")),
        ]
        for d in world["distribution"]
    ]
    lines.append(
        _table(
            [
                "tier",
                "users",
                "followers min",
                "median",
                "p99",
                "max",
                "following min",
                "median",
                "p99",
                "max",
            ],
            rows,
        )
    )
    loads = [
        [
            s,
            "replayed from the log" if "replay_s" in r["world"] else "loaded by the processors",
            r["world"]["process_s"],
            r["world"].get("replay_cpu_s", ""),
            round(r["world"]["events"] / max(r["world"]["process_s"], 0.1)),
        ]
        for s, r in _ordered({s: r for runs in experiments.values() for s, r in runs.items()})
    ]
    # Results of worlds made before the replayed ones kept the base's append time say 0.
    appended = f" in {world['append_s']} s" if world["append_s"] else ""
    how = [
        f"Making the worlds: the events are generated (graph drawn in {world['graph_s']} s) and "
        f"appended through the Log port{appended} (bulk append)."
    ]
    if any(row[1] == "replayed from the log" for row in loads):
        how.append(
            "Replayed: a copy of that one log, the strategy's projections rebuilt from it by "
            "`fanline.replay.rebuild` (the processors' fold in batches of 10,000), the "
            "strategies' replays at once, one process each."
        )
    if any(row[1] == "loaded by the processors" for row in loads):
        how.append(
            "Loaded: a world `fanline world` made (its own append, then the live processors "
            "until caught up), or one `fanline experiment --world` copied."
        )
    lines += [
        "",
        " ".join(how),
        "",
        _table(["strategy", "projections", "replay or processors (s)", "CPU-seconds", "events/s"], loads),
    ]
    return lines


def _timing_section(experiments: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """How long each experiment took, per strategy (the worlds were made before)."""
    names = [n for n in ("storage", "retrieval", "consistency", "throughput") if n in experiments]
    strategies = [s for s in STRATEGY_ORDER if any(s in experiments[n] for n in names)]
    rows = [
        [s, *(experiments[n][s]["seconds"] if s in experiments[n] else "" for n in names)]
        for s in strategies
    ]
    return ["Seconds each experiment took:", "", _table(["strategy", *(f"{n} (s)" for n in names)], rows), ""]


def write_report(results: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    found = load_results(results)
    lines = ["# fanline: push, pull and hybrid fan-out measured", ""]
    machines = [r["machine"] for scale in found.values() for runs in scale.values() for r in runs.values()]
    if machines:
        m = min(machines, key=lambda x: str(x['measured_at']))
        loads = [x["loadavg_1m"] for x in machines]
        lines += [
            f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['system']}, Python {m['python']}. Shared with "
            f"other work while measured: 1-minute load average {min(loads)} to {max(loads)} "
            f"across the runs (2 means both cores busy). First run {m['measured_at']}.",
            "",
        ]
    lines += [
        "Every figure counts good answers only: a timeline read is good when it is a 200 with a "
        "non-empty, well-formed page; a 404, an error or an empty page is a failure and is shown "
        "as such, never as a fast read. The servers run with no timeline page cache "
        "(FANLINE_PAGE_CACHE_MIB=0): every page is read from the store, so the figures compare the "
        "strategies, not the cache.",
        "",
    ]
    for scale in sorted(found, key=lambda s: SCALE_ORDER.index(s) if s in SCALE_ORDER else -1):
        experiments = found[scale]
        lines += [f"## {scale} users", "", *_world_section(scale, experiments), ""]
        lines += _timing_section(experiments)
        if "retrieval" in experiments:
            runs = experiments["retrieval"]
            rows = [
                [
                    s,
                    r["target"],
                    r["following"],
                    r["p50"],
                    r["p95"],
                    r["p99"],
                    r["page_bytes"],
                    r["reads"],
                    r["failures"],
                ]
                for s, res in _ordered(runs)
                for r in res["figures"]
            ]
            lines += [
                "### Retrieval",
                "",
                "Sequential first-page reads (limit 50) by the users whose following "
                "is nearest each target (their median following is shown); no world user follows "
                "fewer than 50, so the 10 row is read by probe users added through the API, each "
                "following 10 of a real regular user's followees.",
                "",
                _table(
                    [
                        "strategy",
                        "target",
                        "following",
                        "p50 ms",
                        "p95 ms",
                        "p99 ms",
                        "page bytes",
                        "reads",
                        "failed",
                    ],
                    rows,
                ),
                "",
                f"![retrieval]({plot_retrieval(scale, runs, out)})",
                "",
            ]
        if "consistency" in experiments:
            runs = experiments["consistency"]
            rows = [
                [
                    s,
                    *(f"{v:.1%}" for v in r["figures"]["visible_fraction"]),
                    sum(1 for p in r["figures"]["probes"] if "visible" in p),
                    sum(p["followers_sampled"] for p in r["figures"]["probes"] if "visible" in p),
                    r["figures"]["background_rps"],
                ]
                for s, r in _ordered(runs)
            ]
            cps = next(iter(runs.values()))["figures"]["checkpoints_s"]
            lines += [
                "### Consistency",
                "",
                "Posts by authors of each tier in turn; at each time after the 202 "
                "the sampled followers' first pages are read; a follower that once showed the post "
                "counts from then on. Inconsistency ratio = 1 - visible.",
                "",
                _table(
                    [
                        "strategy",
                        *(f"visible at {c:g} s" for c in cps),
                        "probes",
                        "followers sampled",
                        "background req/s",
                    ],
                    rows,
                ),
                "",
                f"![consistency]({plot_consistency(scale, runs, out)})",
                "",
            ]
        if "storage" in experiments:
            runs = experiments["storage"]
            rows = [
                [s, t, f"{v['items']:,}", f"{v['bytes'] / 1e6:.1f}"]
                for s, r in _ordered(runs)
                for t, v in r["figures"]["tables"].items()
                if v["items"]
            ]
            amp = [
                [
                    s,
                    r["figures"]["posts"],
                    r["figures"]["timeline_entries_written"],
                    r["figures"]["write_amplification"],
                ]
                for s, r in _ordered(runs)
            ]
            lines += [
                "### Storage",
                "",
                _table(["strategy", "table", "items", "MB"], rows),
                "",
                _table(["strategy", "posts", "timeline items written", "per post"], amp),
                "",
                f"![storage]({plot_storage(scale, runs, out)})",
                "",
            ]
        if "throughput" in experiments:
            runs = experiments["throughput"]
            rows = [
                [
                    s,
                    r["api_processes"],
                    r["processor_processes"],
                    r["posts"]["per_s"],
                    r["posts"]["good"] + r["posts"]["failures"],
                    r["posts"]["failures"],
                    r["reads"]["per_s"],
                    r["reads"]["good"] + r["reads"]["failures"],
                    r["reads"]["failures"],
                    f"{r['posts']['seconds']} / {r['reads']['seconds']}",
                ]
                for s, res in _ordered(runs)
                for r in res["figures"]
            ]
            lines += [
                "### Throughput",
                "",
                "Closed-loop HTTP clients in one Python process on the same 2 "
                "cores as the server, so the figures are what this machine sustains with its load "
                "generator, not the server alone.",
                "",
                _table(
                    [
                        "strategy",
                        "API processes",
                        "processor processes",
                        "posts/s",
                        "posts sent",
                        "failed",
                        "reads/s",
                        "reads sent",
                        "failed",
                        "seconds (posts / reads)",
                    ],
                    rows,
                ),
                "",
                f"![throughput]({plot_throughput(scale, runs, out)})",
                "",
            ]
    capacity_path = results / "capacity.json"
    if capacity_path.exists():
        capacity = json.loads(capacity_path.read_text())
        rows = [
            [
                f"{r['users']:,}",
                r["strategy"],
                r["kinesis_shards"],
                f"{r['peak_write_units_s']:,}",
                f"{r['peak_read_units_s']:,}",
                r["timeline_writes_per_post"],
                r["storage_gb"],
                f"{r['monthly_usd_total']:,.0f}",
            ]
            for r in capacity["rows"]
        ]
        assumptions = ", ".join(f"{k} = {v}" for k, v in capacity["assumptions"].items())
        lines += [
            "## Capacity on AWS (a model on paper)",
            "",
            _table(
                [
                    "users",
                    "strategy",
                    "Kinesis shards",
                    "peak WCU/s",
                    "peak RCU/s",
                    "timeline writes/post",
                    "storage GB",
                    "USD/month",
                ],
                rows,
            ),
            "",
            f"Assumptions: {assumptions}. Monthly cost is for the mean rate (on-demand bills per "
            "request); shards and capacity units are sized for the peak. Prices: us-east-1, "
            "2025 list prices, check the current ones.",
            "",
            f"![capacity]({plot_capacity(capacity, out)})",
            "",
        ]
    notes = results / "NOTES.md"  # what the person who ran them saw, written by hand
    if notes.exists():
        lines += ["## Notes", "", notes.read_text().strip(), ""]
    readme = out / "README.md"
    readme.write_text("\n".join(lines))
    return readme
