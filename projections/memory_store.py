"""MemoryStore: the Store port in plain dicts, for unit tests of the folds and the API.

Correct and simple rather than fast: lists are sorted when read. Nothing survives the process.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Sequence
from typing import TypeVar

from projections import feed
from projections.records import (
    DeadLetter,
    DeleteFollow,
    DeletePost,
    DeleteTimelineEntries,
    Mutation,
    Post,
    PutFollow,
    PutPost,
    PutTimelineEntries,
    PutUser,
    SortKey,
    TimelineEntry,
    TrimTimelines,
    User,
)
from projections.tables import sequence_position, sort_key

# Posts and timeline entries share the (ts, post_id) order.
T = TypeVar("T", Post, TimelineEntry)


def _newest_first(
    items: Iterable[T], limit: int, before: SortKey | None
) -> list[T]:
    kept = (item for item in items if before is None or item.key < before)
    return heapq.nlargest(limit, kept, key=lambda item: item.key)


def _page(ids: Iterable[str], limit: int, after: str | None) -> list[str]:
    return sorted(i for i in ids if after is None or i > after)[:limit]


def _check(mutation: Mutation) -> None:
    """Raise ValueError for what the other stores cannot key (sort_key checks the ts)."""
    match mutation:
        case PutPost(post):
            sort_key(post.key)
        case DeletePost(_, post_id, ts):
            sort_key((ts, post_id))
        case PutTimelineEntries(entries):
            for entry in entries:
                sort_key(entry.key)
        case DeleteTimelineEntries(keys):
            for _, ts, post_id in keys:
                sort_key((ts, post_id))
        case TrimTimelines(_, cap) if cap < 0:
            raise ValueError(f"timeline cap {cap} is negative")


class MemoryStore(feed.ComposedFeeds):
    def __init__(self) -> None:
        self._applied: dict[str, str] = {}
        self._users: dict[str, User] = {}
        self._followers: dict[str, set[str]] = {}
        self._following: dict[str, set[str]] = {}
        self._posts: dict[str, Post] = {}
        self._posts_by_author: dict[str, dict[SortKey, Post]] = {}
        self._timelines: dict[str, dict[SortKey, TimelineEntry]] = {}
        self._dead: dict[tuple[str, str], DeadLetter] = {}

    # --- writes ----------------------------------------------------------------------------
    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        # Refuse bad input before changing anything, as the other stores do.
        sequence_position(sequence)
        for mutation in mutations:
            _check(mutation)
        current = self._applied.get(shard_id)
        if current is not None and int(current) > int(sequence):
            return  # a late writer's batch: a later one of the shard is in (Store.apply)
        for mutation in mutations:
            self._apply_one(mutation)
        # Sequence numbers are decimal strings: compare them as numbers, and never go back.
        if current is None or int(sequence) > int(current):
            self._applied[shard_id] = sequence

    def _apply_one(self, mutation: Mutation) -> None:
        match mutation:
            case PutUser(user):
                self._users[user.user_id] = user
            case PutFollow(follower_id, followee_id):
                self._followers.setdefault(followee_id, set()).add(follower_id)
                self._following.setdefault(follower_id, set()).add(followee_id)
            case DeleteFollow(follower_id, followee_id):
                self._followers.get(followee_id, set()).discard(follower_id)
                self._following.get(follower_id, set()).discard(followee_id)
            case PutPost(post):
                self._posts[post.post_id] = post
                self._posts_by_author.setdefault(post.author_id, {})[post.key] = post
            case DeletePost(author_id, post_id, ts):
                self._posts.pop(post_id, None)
                self._posts_by_author.get(author_id, {}).pop((ts, post_id), None)
            case PutTimelineEntries(entries):
                for entry in entries:
                    self._timelines.setdefault(entry.user_id, {})[entry.key] = entry
            case DeleteTimelineEntries(keys):
                for user_id, ts, post_id in keys:
                    self._timelines.get(user_id, {}).pop((ts, post_id), None)
            case TrimTimelines(user_ids, cap):
                for user_id in user_ids:
                    timeline = self._timelines.get(user_id, {})
                    for key in sorted(timeline, reverse=True)[cap:]:
                        del timeline[key]

    async def applied(self) -> dict[str, str]:
        return dict(self._applied)

    # --- state for the folds ---------------------------------------------------------------
    async def users(self, user_ids: Collection[str]) -> dict[str, User]:
        return {i: self._users[i] for i in user_ids if i in self._users}

    async def follower_ids(self, user_id: str) -> set[str]:
        return set(self._followers.get(user_id, ()))

    async def recent_posts(self, author_id: str, limit: int) -> list[Post]:
        return await self.posts_page(author_id, limit, None)

    # --- reads -----------------------------------------------------------------------------
    async def following_count(self, user_id: str) -> int:
        return len(self._following.get(user_id, ()))

    async def followers_page(self, user_id: str, limit: int, after: str | None) -> list[str]:
        return _page(self._followers.get(user_id, ()), limit, after)

    async def following_page(self, user_id: str, limit: int, after: str | None) -> list[str]:
        return _page(self._following.get(user_id, ()), limit, after)

    async def following_ids(self, user_id: str) -> list[str]:
        return sorted(self._following.get(user_id, ()))

    async def posts_page(self, author_id: str, limit: int, before: SortKey | None) -> list[Post]:
        return _newest_first(self._posts_by_author.get(author_id, {}).values(), limit, before)

    async def posts_of_authors(
        self, author_ids: Collection[str], limit: int, before: SortKey | None
    ) -> list[Post]:
        posts = (p for a in set(author_ids) for p in self._posts_by_author.get(a, {}).values())
        return _newest_first(posts, limit, before)

    async def posts_by_id(self, post_ids: Collection[str]) -> dict[str, Post]:
        return {i: self._posts[i] for i in post_ids if i in self._posts}

    async def timeline_page(
        self, user_id: str, limit: int, before: SortKey | None
    ) -> list[TimelineEntry]:
        return _newest_first(self._timelines.get(user_id, {}).values(), limit, before)

    # --- dead letters ----------------------------------------------------------------------
    async def put_dead_letter(self, letter: DeadLetter) -> None:
        self._dead[(letter.shard_id, letter.sequence)] = letter

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        ordered = sorted(self._dead.values(), key=lambda d: (d.shard_id, int(d.sequence)))
        return ordered[:limit]

    async def delete_dead_letter(self, shard_id: str, sequence: str) -> None:
        self._dead.pop((shard_id, sequence), None)

    # --- lifecycle -------------------------------------------------------------------------
    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
