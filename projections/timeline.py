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
from typing import Literal

import msgspec

from projections.feed import newest
from projections.records import FeedPost, SortKey
from projections.store import Store

Strategy = Literal["push", "pull", "hybrid"]
STRATEGIES: tuple[Strategy, ...] = ("push", "pull", "hybrid")


class BadCursor(ValueError):
    """A cursor this service did not hand out (or one that was altered)."""


# The page's items are the store's FeedPosts as they are: post_id, author_id, author_handle,
# body, created_at (the post's ts).
TimelineItem = FeedPost


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


class TimelineReader:
    """A page is one round of store calls, each answering its newest `limit` live items older
    than the cursor, already hydrated: `Store.timeline_feed` (push), `Store.hybrid_feed`
    (hybrid: pushed and celebrities' posts in one call), `Store.authors_feed` (pull, and an
    author's own posts). The page is their newest `limit` (`projections.feed.newest`, exact).
    """

    def __init__(self, store: Store, strategy: Strategy) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        self._store = store
        self._strategy = strategy

    @property
    def strategy(self) -> Strategy:
        """The strategy the next page is read with."""
        return self._strategy

    async def page(self, user_id: str, limit: int, cursor: str | None = None) -> TimelinePage:
        before = decode_cursor(cursor)
        _check_limit(limit)
        if self._strategy == "push":
            found = await self._store.timeline_feed(user_id, limit, before)
        elif self._strategy == "hybrid":
            found = await self._store.hybrid_feed(user_id, limit, before)
        else:
            followees = await self._store.following_ids(user_id)
            found = await self._store.authors_feed([*followees, user_id], limit, before)
        return _page(found, limit)

    async def posts_page(self, author_id: str, limit: int, cursor: str | None = None) -> TimelinePage:
        before = decode_cursor(cursor)
        _check_limit(limit)
        return _page(await self._store.authors_feed([author_id], limit, before), limit)


def _page(found: list[FeedPost], limit: int) -> TimelinePage:
    # The adapters already answer newest first; `newest` also dedupes (a celebrity's post may
    # be both pushed, from before they crossed the line, and pulled) whatever the adapter.
    shown = newest(found, limit)
    next_cursor = encode_cursor(shown[-1].key) if len(shown) == limit else None
    return TimelinePage(items=shown, next_cursor=next_cursor)


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")

