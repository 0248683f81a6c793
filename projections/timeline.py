"""The timeline read model: what a reader sees, built from the Store port alone.

    push    the user's pushed timeline
    hybrid  the pushed timeline merged with the latest posts of the celebrities the user follows
    pull    the latest posts of everyone the user follows, and the user's own

Ordered by (ts, post_id) newest first, deduplicated by post_id, deleted posts dropped (a
pushed entry whose post is gone is skipped, so a stale entry is never shown), hydrated with
the author's handle ("" when the author never registered).

The cursor is opaque: urlsafe base64 of the JSON `[ts, post_id]` of the last item shown.
Every source is asked only for items strictly older than it, so paging while new posts
arrive neither skips nor repeats an item.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Collection
from typing import Literal

import msgspec

from projections.records import Post, SortKey, TimelineEntry, User
from projections.store import Store

Strategy = Literal["push", "pull", "hybrid"]
STRATEGIES: tuple[Strategy, ...] = ("push", "pull", "hybrid")


class BadCursor(ValueError):
    """A cursor this service did not hand out (or one that was altered)."""


class TimelineItem(msgspec.Struct, frozen=True):
    post_id: str
    author_id: str
    author_handle: str
    body: str
    created_at: int  # ms since epoch: the post's ts


class TimelinePage(msgspec.Struct, frozen=True):
    items: list[TimelineItem]
    next_cursor: str | None


def encode_cursor(key: SortKey) -> str:
    raw = msgspec.json.encode([key[0], key[1]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> SortKey | None:
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, post_id = msgspec.json.decode(raw, type=tuple[int, str])
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadCursor(f"bad cursor {cursor!r}: not one this service handed out") from exc
    if not post_id:
        raise BadCursor(f"bad cursor {cursor!r}: empty post id")
    return (ts, post_id)


# A source answers "the newest n items older than `before`" as (key, post_id) pairs plus the
# posts it already knows (pulled posts come whole; pushed entries need a lookup).
_Candidate = tuple[SortKey, str, Post | None]
_Source = Callable[[int, SortKey | None], Awaitable[list[_Candidate]]]


class TimelineReader:
    def __init__(self, store: Store, strategy: Strategy) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        self._store = store
        self._strategy = strategy

    async def page(self, user_id: str, limit: int, cursor: str | None = None) -> TimelinePage:
        before = decode_cursor(cursor)
        _check_limit(limit)
        sources: list[_Source] = []
        if self._strategy in ("push", "hybrid"):
            sources.append(self._pushed(user_id))
        if self._strategy == "hybrid":
            followees = await self._store.following_ids(user_id)
            users = await self._store.users(followees)
            celebrities = [u for u in followees if u in users and users[u].celebrity]
            if celebrities:
                sources.append(self._pulled(celebrities))
        if self._strategy == "pull":
            followees = await self._store.following_ids(user_id)
            sources.append(self._pulled([*followees, user_id]))
        return await self._merge(sources, limit, before)

    async def posts_page(self, author_id: str, limit: int, cursor: str | None = None) -> TimelinePage:
        before = decode_cursor(cursor)
        _check_limit(limit)
        return await self._merge([self._pulled([author_id])], limit, before)

    # --- sources ---------------------------------------------------------------------------
    def _pushed(self, user_id: str) -> _Source:
        async def fetch(n: int, before: SortKey | None) -> list[_Candidate]:
            entries: list[TimelineEntry] = await self._store.timeline_page(user_id, n, before)
            return [(e.key, e.post_id, None) for e in entries]

        return fetch

    def _pulled(self, author_ids: Collection[str]) -> _Source:
        async def fetch(n: int, before: SortKey | None) -> list[_Candidate]:
            posts = await self._store.posts_of_authors(author_ids, n, before)
            return [(p.key, p.post_id, p) for p in posts]

        return fetch

    # --- the merge -------------------------------------------------------------------------
    async def _merge(self, sources: list[_Source], limit: int, before: SortKey | None) -> TimelinePage:
        shown: list[Post] = []
        while len(shown) < limit:
            want = limit - len(shown)
            candidates: dict[SortKey, tuple[str, Post | None]] = {}
            # Items older than the newest "last item" of a full answer may still be missing
            # from some source: only what is at or above that horizon is complete this round.
            horizon: SortKey | None = None
            for fetch in sources:
                got = await fetch(want, before)
                for key, post_id, post in got:
                    if candidates.get(key, (post_id, None))[1] is None:
                        candidates[key] = (post_id, post)
                if len(got) == want and (horizon is None or got[-1][0] > horizon):
                    horizon = got[-1][0]
            ordered = sorted(candidates, reverse=True)
            taken = [k for k in ordered if horizon is None or k >= horizon][:want]
            if not taken:
                break
            posts = await self._hydrate([candidates[k] for k in taken])
            shown.extend(p for p in posts if p is not None)
            before = taken[-1]
            if horizon is None and len(taken) == len(ordered):
                break  # every source is exhausted
        users = await self._store.users({p.author_id for p in shown})
        items = [_item(p, users.get(p.author_id)) for p in shown]
        next_cursor = encode_cursor(shown[-1].key) if len(shown) == limit else None
        return TimelinePage(items=items, next_cursor=next_cursor)

    async def _hydrate(self, candidates: list[tuple[str, Post | None]]) -> list[Post | None]:
        missing = [post_id for post_id, post in candidates if post is None]
        found = await self._store.posts_by_id(missing) if missing else {}
        return [post if post is not None else found.get(post_id) for post_id, post in candidates]


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def _item(post: Post, author: User | None) -> TimelineItem:
    handle = author.handle if author is not None else ""
    return TimelineItem(post.post_id, post.author_id, handle, post.body, post.ts)
