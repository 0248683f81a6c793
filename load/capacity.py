"""A capacity model on paper for AWS: shards, write and read capacity, monthly cost per strategy.

Arithmetic only, from stated assumptions (`Assumptions`, every one printed with the figures).
The two that depend on the graph (what share of follow edges point at celebrities, how many
celebrities a reader follows) are taken from the largest world measured, by the caller.
Prices: us-east-1, on-demand, as published in 2025 (DynamoDB on-demand after its November 2024
price cut; Kinesis provisioned mode). They change: check the current price list.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

HOURS_PER_MONTH = 730
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Assumptions:
    posts_per_user_day: float = 2.0
    timeline_reads_per_user_day: float = 20.0
    follows_per_user_day: float = 0.1
    peak_to_mean: float = 3.0  # capacity is provisioned for the peak hour
    mean_following: float = 150.0  # the tier mix of DESIGN.md: 0.85*125 + 0.14*300 + 0.01*125
    celebrity_edge_share: float = 0.6  # share of follow edges that point at a celebrity (measured)
    celebrities_followed: float = 50.0  # celebrities a reader follows (measured)
    measured_at_scale: str = "none: defaults"  # the world the two above come from
    page: int = 50
    event_bytes: int = 300
    timeline_item_bytes: int = 100
    post_item_bytes: int = 400
    timeline_cap: int = 800
    post_retention_days: int = 365
    backfill_depth: int = 50
    # Prices in USD.
    dynamodb_per_million_writes: float = 0.625
    dynamodb_per_million_reads: float = 0.125
    dynamodb_per_gb_month: float = 0.25
    kinesis_per_shard_hour: float = 0.015
    kinesis_per_million_put_units: float = 0.014
    kinesis_shard_records_per_s: int = 1000
    kinesis_shard_bytes_per_s: int = 1_000_000


def model(users: int, strategy: str, a: Assumptions) -> dict[str, Any]:
    """Peak rates, capacity and monthly cost of one strategy for `users` users."""
    posts_s = users * a.posts_per_user_day / SECONDS_PER_DAY
    follows_s = users * a.follows_per_user_day / SECONDS_PER_DAY
    reads_s = users * a.timeline_reads_per_user_day / SECONDS_PER_DAY
    events_s = posts_s + follows_s
    pushed_followers = {"push": a.mean_following, "hybrid": a.mean_following * (1 - a.celebrity_edge_share),
                        "pull": 0.0}[strategy]
    # Writes (1 KB units): a post is its two items plus a timeline item per pushed follower and
    # one for the author; a follow is two edge items, the user record and the backfill.
    timeline_per_post = pushed_followers + 1 if strategy != "pull" else 0.0
    backfill = a.backfill_depth if strategy != "pull" else 0
    writes_per_s = posts_s * (2 + timeline_per_post) + follows_s * (3 + backfill)
    # Reads (eventually consistent: 0.5 unit per 4 KB): a pushed page is one query, then the
    # posts of the page by id; pull queries every followee's newest posts (posts carry bodies).
    page_units = 0.5 * math.ceil(a.page * a.timeline_item_bytes / 4096)
    hydrate = 0.5 * a.page
    reads_units = {"push": page_units + hydrate,
                   "hybrid": page_units + hydrate + 0.5 * a.celebrities_followed,
                   "pull": 0.5 * a.mean_following}[strategy]
    read_units_s = reads_s * reads_units
    peak = a.peak_to_mean
    shards = max(1, math.ceil(max(events_s * peak / a.kinesis_shard_records_per_s,
                                  events_s * peak * a.event_bytes / a.kinesis_shard_bytes_per_s)))
    month_s = HOURS_PER_MONTH * 3600
    timeline_gb = users * a.timeline_cap * a.timeline_item_bytes / 1e9 if strategy != "pull" else 0.0
    posts_gb = users * a.posts_per_user_day * a.post_retention_days * a.post_item_bytes * 2 / 1e9
    edges_gb = users * a.mean_following * 2 * 40 / 1e9
    storage_gb = timeline_gb + posts_gb + edges_gb
    cost = {
        "dynamodb_writes": writes_per_s * month_s / 1e6 * a.dynamodb_per_million_writes,
        "dynamodb_reads": read_units_s * month_s / 1e6 * a.dynamodb_per_million_reads,
        "dynamodb_storage": storage_gb * a.dynamodb_per_gb_month,
        "kinesis_shards": shards * HOURS_PER_MONTH * a.kinesis_per_shard_hour,
        "kinesis_puts": events_s * month_s / 1e6 * a.kinesis_per_million_put_units,
    }
    return {
        "users": users, "strategy": strategy,
        "peak_events_s": round(events_s * peak, 1), "kinesis_shards": shards,
        "peak_write_units_s": round(writes_per_s * peak), "peak_read_units_s": round(read_units_s * peak),
        "timeline_writes_per_post": round(timeline_per_post, 1), "read_units_per_timeline_read": reads_units,
        "storage_gb": round(storage_gb, 1),
        "monthly_usd": {k: round(v, 2) for k, v in cost.items()},
        "monthly_usd_total": round(sum(cost.values()), 2),
    }


def capacity_table(a: Assumptions, user_counts: tuple[int, ...] = (1_000_000, 100_000_000)) -> dict[str, Any]:
    rows = [model(n, s, a) for n in user_counts for s in ("push", "pull", "hybrid")]
    return {"assumptions": asdict(a), "rows": rows}
