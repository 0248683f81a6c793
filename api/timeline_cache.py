"""Encoded timeline pages kept in the API process, each with the feed stamp it was read under.

A page read asks the store for the page's stamp (`Store.feed_stamp`; on SQLite no query while
the file is unchanged, an indexed lookup per stamp after a write, and stamps at most 1 ms late)
and, when it equals the stamp kept with the page, answers the kept bytes: the bytes a fresh read
would give
(tests/api/test_timeline_cache.py checks that on random histories). Otherwise it reads the
stamp, then the page, and keeps both: read in that order, a change between the two leaves the
kept stamp older than the page, so the next read refreshes it; never the other way round.

A hybrid page also depends on which celebrities the reader follows, and the stamp covers their
posts: the list is read before and after the stamp, and the page is kept only when the two
agree (the list changes only with a stamp, so then it is the list the stamp covers); likewise the
strategy, which a projection version switch may change (projections.switching).

A read with `consistent_after` (a reader waiting for its own write) is always read afresh.
Not kept: pull pages (every followee's posts are in them), pages showing a post whose author
has not registered (the handle is "" until then, outside any stamp), and nothing at all when
the store answers None (memory, DynamoDB: every page is read afresh). Kept pages are bounded in
bytes, least recently used first out.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

import msgspec
from cachetools import LRUCache
from prometheus_client import Counter

from projections.store import Store
from projections.timeline import Strategy, TimelineReader

PAGES = Counter(
    "fanline_timeline_pages_total", "Timeline pages answered, by where from", ("source",)
)
_HIT, _READ = PAGES.labels("cache"), PAGES.labels("store")
_encode = msgspec.json.Encoder().encode

Key = tuple[str, int, str | None]  # user id, limit, cursor


class _Kept(NamedTuple):
    stamp: Hashable
    authors: tuple[str, ...]
    body: bytes


def _size(kept: _Kept) -> int:
    return len(kept.body) + 200  # the key, the stamp and the tuple, roughly


class TimelineCache:
    def __init__(self, store: Store, timelines: TimelineReader, max_bytes: int) -> None:
        self._store = store
        self._timelines = timelines
        self._on = max_bytes > 0
        self._kept: LRUCache[Key, _Kept] = LRUCache(maxsize=max(max_bytes, 1), getsizeof=_size)

    async def page(self, user_id: str, limit: int, cursor: str | None, *, fresh: bool = False) -> bytes:
        """The page's JSON (a `TimelinePage`), from the cache while its stamp holds; `fresh`:
        read from the store (a reader waiting for its own write: the stamps may lag by a
        millisecond, see SQLiteStore.feed_stamp)."""
        strategy = self._timelines.strategy  # a version switch may change it
        if not self._on or fresh or strategy == "pull":
            _READ.inc()
            return _encode(await self._timelines.page(user_id, limit, cursor))
        key = (user_id, limit, cursor)
        kept = self._kept.get(key)
        # A kept page's stamp includes its store's identity: after a switch it never matches.
        if kept is not None and await self._store.feed_stamp(user_id, kept.authors) == kept.stamp:
            _HIT.inc()
            return kept.body
        _READ.inc()
        authors = await self._celebrities(user_id, strategy)
        stamp = await self._store.feed_stamp(user_id, authors)
        steady = (stamp is not None and self._timelines.strategy == strategy
                  and await self._celebrities(user_id, strategy) == authors)
        page = await self._timelines.page(user_id, limit, cursor)
        body = _encode(page)
        if steady and all(item.author_handle for item in page.items):
            self._kept[key] = _Kept(stamp, authors, body)
        else:
            self._kept.pop(key, None)
        return body

    async def _celebrities(self, user_id: str, strategy: Strategy) -> tuple[str, ...]:
        return tuple(await self._store.celebrity_followees(user_id)) if strategy == "hybrid" else ()
