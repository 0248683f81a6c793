"""The tiered synthetic world of the experiments: DESIGN.md's tiers, scaled to 5K-100K users.

The seed distribution (85 % regular, 14 % influencers, 1 % celebrities; followers 10-100 /
100-50 000 / 50 000-500 000; following 50-200 / 100-500 / 50-200) cannot hold at this size
(DESIGN.md, "Where the seeds disagree"). So:

- each user follows exactly a number drawn uniformly from its tier's following range (at most
  N-1): the following ranges are kept as they are;
- whom they follow is drawn in proportion to a popularity weight, log-uniform in the
  followee's tier's *follower* range: celebrities are followed most, then influencers, then
  regular users (the tier shares and their order of popularity are kept);
- no one follows themself or anyone twice, so followers are capped at N-1;
- the followers that result are what they are: `distribution()` reports them.

Users are ordered by tier (celebrities first, `user_id(0)` is one), the same for a given
(users, seed) on every run. Each user writes `posts_per_user` posts spread over the week
before `now_ms`; events come registrations first, then follows (grouped by followee), then
posts in time order, so every post fans out to its author's whole follower set.
"""

from __future__ import annotations

import math
import random
import statistics
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate

from load.world import _WORDS, EPOCH_MS, user_id
from streams.events import (
    Event,
    FollowData,
    PostCreated,
    PostCreatedData,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
)

WEEK_MS = 7 * 24 * 3600 * 1000
# Weighted draws per round before the rest of a user's followees are drawn uniformly from who
# is left: only tiny worlds (following close to N-1) get there; it bounds the rejection loop.
WEIGHTED_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    share: float
    followers: tuple[int, int]
    following: tuple[int, int]


TIERS = (
    Tier("celebrity", 0.01, (50_000, 500_000), (50, 200)),
    Tier("influencer", 0.14, (100, 50_000), (100, 500)),
    Tier("regular", 0.85, (10, 100), (50, 200)),
)


@dataclass(frozen=True, slots=True)
class Stats:
    min: int
    median: float
    p99: int
    max: int

    @classmethod
    def of(cls, values: list[int]) -> Stats:
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
        return cls(ordered[0], statistics.median(ordered), p99, ordered[-1])


@dataclass(frozen=True, slots=True)
class TierStats:
    tier: str
    users: int
    followers: Stats
    following: Stats


@dataclass(frozen=True)
class TieredWorld:
    users: int
    seed: int = 7
    posts_per_user: int = 10
    # A fixed clock: the same seed gives the same ts on every run. The default is 2026-01-08.
    now_ms: int = EPOCH_MS + WEEK_MS

    def __post_init__(self) -> None:
        if self.users < 3:
            raise ValueError(f"a tiered world needs at least 3 users (one per tier), got {self.users}")
        if self.posts_per_user < 0:
            raise ValueError(f"posts_per_user must be 0 or more, got {self.posts_per_user}")

    # --- tiers --------------------------------------------------------------------------------
    @cached_property
    def tier_sizes(self) -> tuple[int, ...]:
        """Users per tier, in TIERS order; each tier has at least one user."""
        celebrities = max(1, round(TIERS[0].share * self.users))
        influencers = max(1, round(TIERS[1].share * self.users))
        return celebrities, influencers, self.users - celebrities - influencers

    def tier_of(self, index: int) -> Tier:
        bound = 0
        for tier, size in zip(TIERS, self.tier_sizes, strict=True):
            bound += size
            if index < bound:
                return tier
        raise IndexError(f"no user {index} in a world of {self.users}")

    # --- the graph ------------------------------------------------------------------------------
    @cached_property
    def followees(self) -> list[array[int]]:
        """Per user (by index), whom it follows, sorted. Computed once per world object."""
        rng = random.Random(self.seed)
        n = self.users
        weights = [_log_uniform(rng, *self.tier_of(i).followers) for i in range(n)]
        cum = list(accumulate(weights))
        population = range(n)
        graph: list[array[int]] = []
        for me in range(n):
            lo, hi = self.tier_of(me).following
            want = min(rng.randint(lo, hi), n - 1)
            chosen: set[int] = set()
            for _ in range(WEIGHTED_ROUNDS):
                missing = want - len(chosen)
                if missing <= 0:
                    break
                for v in rng.choices(population, cum_weights=cum, k=2 * missing):
                    if v != me:
                        chosen.add(v)
                        if len(chosen) == want:
                            break
            if len(chosen) < want:
                rest = [v for v in population if v != me and v not in chosen]
                chosen.update(rng.sample(rest, want - len(chosen)))
            graph.append(array("i", sorted(chosen)))
        return graph

    def followers(self) -> list[array[int]]:
        """Per user (by index), who follows it, sorted: the graph inverted."""
        inverse: list[array[int]] = [array("i") for _ in range(self.users)]
        for me, row in enumerate(self.followees):
            for v in row:
                inverse[v].append(me)
        return inverse

    def follower_counts(self) -> list[int]:
        counts = [0] * self.users
        for row in self.followees:
            for v in row:
                counts[v] += 1
        return counts

    def celebrity_threshold(self) -> int:
        """The smallest follower count in the top 1 % by followers (DESIGN.md: every scale)."""
        top = sorted(self.follower_counts(), reverse=True)
        return max(1, top[self.tier_sizes[0] - 1])

    def distribution(self) -> list[TierStats]:
        followers = self.follower_counts()
        out, start = [], 0
        for tier, size in zip(TIERS, self.tier_sizes, strict=True):
            members = range(start, start + size)
            if size:
                out.append(TierStats(tier.name, size, Stats.of([followers[i] for i in members]),
                                     Stats.of([len(self.followees[i]) for i in members])))
            start += size
        return out

    def event_count(self) -> int:
        return self.users + sum(len(row) for row in self.followees) + self.users * self.posts_per_user

    # --- the events -----------------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        """Registrations, then follows (a week before now), then posts in time order."""
        start = self.now_ms - WEEK_MS
        for i in range(self.users):
            data = UserRegisteredData(user_id=user_id(i), handle=f"user_{i:04d}", display_name=f"User {i}")
            yield UserRegistered(id=f"tw-user-{i}", ts=start - 2, data=data)
        # Grouped by followee (the partition key): a batch of the processors then touches a few
        # followees, each follower set read about once, instead of every celebrity's in every batch.
        for j, followers in enumerate(self.followers()):
            them = user_id(j)
            for i in followers:
                edge = FollowData(follower_id=user_id(i), followee_id=them)
                yield UserFollowed(id=f"tw-follow-{i}-{j}", ts=start - 1, data=edge)
        yield from self._posts(start)

    def _posts(self, start: int) -> Iterator[PostCreated]:
        # A generator of its own: the graph's draws do not shift the posts' and vice versa.
        rng = random.Random(f"{self.seed}-posts")
        posts = []
        for i in range(self.users):
            for k in range(self.posts_per_user):
                body = " ".join(rng.choices(_WORDS, k=rng.randint(3, 12)))
                posts.append((start + rng.randrange(WEEK_MS), i, k, body))
        posts.sort()
        for ts, i, k, body in posts:
            data = PostCreatedData(post_id=f"tp{i}-{k}", author_id=user_id(i), body=body)
            yield PostCreated(id=f"tw-post-{i}-{k}", ts=ts, data=data)


def _log_uniform(rng: random.Random, lo: int, hi: int) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def format_distribution(stats: list[TierStats]) -> str:
    lines = [f"{'tier':<11} {'users':>7}   followers min/median/p99/max   following min/median/p99/max"]
    for s in stats:
        f, g = s.followers, s.following
        lines.append(f"{s.tier:<11} {s.users:>7}   {f.min:>6} {f.median:>8g} {f.p99:>7} {f.max:>7}"
                     f"   {g.min:>6} {g.median:>8g} {g.p99:>7} {g.max:>7}")
    return "\n".join(lines)
