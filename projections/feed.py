"""The Store port's page reads (`celebrity_followees`, `timeline_feed`, `authors_feed`) composed
from its basic reads, for adapters with no cheaper way (MemoryStore; DynamoDBStore, where each
is a few queries). SQLiteStore answers each in one SQL statement instead.

Each function takes the store whose basic reads it composes, so a subclass overriding one of
those (a test's refusing store) is seen here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Hashable, Iterable, Sequence
from operator import attrgetter
from typing import Protocol

from projections.records import FeedPost, Post, SortKey, TimelineEntry, User


class BasicReads(Protocol):
    async def users(self, user_ids: Collection[str]) -> dict[str, User]: ...

    async def following_ids(self, user_id: str) -> list[str]: ...

    async def posts_of_authors(
        self, author_ids: Collection[str], limit: int, before: SortKey | None
    ) -> list[Post]: ...

    async def posts_by_id(self, post_ids: Collection[str]) -> dict[str, Post]: ...

    async def timeline_page(
        self, user_id: str, limit: int, before: SortKey | None
    ) -> list[TimelineEntry]: ...


async def celebrity_followees(store: BasicReads, user_id: str) -> list[str]:
    followees = await store.following_ids(user_id)
    users = await store.users(followees)
    return [f for f in followees if f in users and users[f].celebrity]


async def timeline_feed(
    store: BasicReads, user_id: str, limit: int, before: SortKey | None
) -> list[FeedPost]:
    posts: list[Post] = []
    while len(posts) < limit:
        want = limit - len(posts)
        entries = await store.timeline_page(user_id, want, before)
        found = await store.posts_by_id([e.post_id for e in entries]) if entries else {}
        posts.extend(found[e.post_id] for e in entries if e.post_id in found)
        if len(entries) < want:
            break  # the timeline has nothing older
        before = entries[-1].key
    return await with_handles(store, posts)


async def authors_feed(
    store: BasicReads, author_ids: Collection[str], limit: int, before: SortKey | None
) -> list[FeedPost]:
    if limit <= 0 or not author_ids:
        return []
    return await with_handles(store, await store.posts_of_authors(author_ids, limit, before))


async def hybrid_feed(
    store: BasicReads, user_id: str, limit: int, before: SortKey | None
) -> list[FeedPost]:
    # Both at once: on DynamoDB each is a few round trips of its own.
    found, celebrities = await asyncio.gather(
        timeline_feed(store, user_id, limit, before), celebrity_followees(store, user_id)
    )
    if celebrities:
        found += await authors_feed(store, celebrities, limit, before)
    return newest(found, limit)


class ComposedFeeds:
    """The Store port's four page reads, composed from an adapter's basic reads by the functions
    above: mixed into the adapters with no cheaper way (MemoryStore, DynamoDBStore)."""

    async def celebrity_followees(self: BasicReads, user_id: str) -> list[str]:
        return await celebrity_followees(self, user_id)

    async def timeline_feed(
        self: BasicReads, user_id: str, limit: int, before: SortKey | None
    ) -> list[FeedPost]:
        return await timeline_feed(self, user_id, limit, before)

    async def authors_feed(
        self: BasicReads, author_ids: Collection[str], limit: int, before: SortKey | None
    ) -> list[FeedPost]:
        return await authors_feed(self, author_ids, limit, before)

    async def hybrid_feed(
        self: BasicReads, user_id: str, limit: int, before: SortKey | None
    ) -> list[FeedPost]:
        return await hybrid_feed(self, user_id, limit, before)

    async def feed_stamp(self, user_id: str, authors: Sequence[str]) -> Hashable | None:
        return None  # these stores keep no stamps: every page is read afresh


def newest(found: Iterable[FeedPost], limit: int) -> list[FeedPost]:
    """The newest `limit` of `found`, deduplicated by post id, newest first. Given each source's
    newest `limit`, this is exactly the newest `limit` of their union: an item of the union's
    page has fewer than `limit` newer items in the union, so fewer in its own source."""
    unique = {p.post_id: p for p in found}.values()
    return sorted(unique, key=_KEY, reverse=True)[:limit]


_KEY = attrgetter("created_at", "post_id")  # FeedPost.key without the property call


async def with_handles(store: BasicReads, posts: Sequence[Post]) -> list[FeedPost]:
    users = await store.users({p.author_id for p in posts}) if posts else {}
    return [
        FeedPost(p.post_id, p.author_id, users[p.author_id].handle if p.author_id in users else "",
                 p.body, p.ts)
        for p in posts
    ]
