"""What the folds need to know about the deployment: the fan-out strategy and its limits."""

from __future__ import annotations

from dataclasses import dataclass

from projections.timeline import STRATEGIES, Strategy

# backfill_depth: how many of a followee's newest posts enter a new follower's timeline (and
# how many a demoted celebrity pushes to its followers). 50 covers a first screen and a half
# of a timeline without turning one follow into hundreds of writes.
DEFAULT_BACKFILL_DEPTH = 50


@dataclass(frozen=True, slots=True)
class FoldSettings:
    strategy: Strategy = "hybrid"
    celebrity_threshold: int = 50_000
    timeline_cap: int = 800
    backfill_depth: int = DEFAULT_BACKFILL_DEPTH

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; expected one of {STRATEGIES}")
        for name in ("celebrity_threshold", "timeline_cap", "backfill_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def cleanup_depth(self) -> int:
        """How many of a followee's newest posts an unfollow removes from the timeline: a
        timeline holds at most `timeline_cap` entries, so at most that many can be the followee's."""
        return max(self.timeline_cap, self.backfill_depth)
