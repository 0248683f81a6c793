"""SwitchingStore: a Store that follows the projection-version pointer, for the read API.

Each call looks at the pointer at most once per `check_every_s` (one look at a time, shared by
the calls waiting for it) and, when the active version changed, opens the new version's store
and sends every later call there. Calls already running finish on the old store; old stores are
closed with this one. A pointer that cannot be read keeps the current store (logged).

Each version is read with the fan-out strategy it was built with (a push-built version has
timelines, a pull-built one none): the opener answers it with the store, and
`SwitchingTimelineReader` reads the current version's timelines with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Hashable, Sequence

from projections.records import DeadLetter, FeedPost, Mutation, Post, SortKey, TimelineEntry, User
from projections.store import Store
from projections.timeline import Strategy, TimelinePage, TimelineReader
from projections.versions import VersionPointer, Versions

logger = logging.getLogger(__name__)

# The active version's store and its strategy, from the pointer's contents.
Opener = Callable[[Versions], Awaitable[tuple[Store, Strategy]]]


class SwitchingStore:
    def __init__(self, pointer: VersionPointer, open_version: Opener, version: str, store: Store,
                 strategy: Strategy, *, check_every_s: float = 1.0) -> None:
        self.pointer = pointer
        self.version = version
        self.strategy = strategy
        self._open = open_version
        self._store = store
        self._stores = [store]
        self._check_every_s = check_every_s
        self._checked = time.monotonic()
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, pointer: VersionPointer, open_version: Opener, *,
                   check_every_s: float = 1.0) -> SwitchingStore:
        versions = await pointer.get()
        store, strategy = await open_version(versions)
        return cls(pointer, open_version, versions.active, store, strategy, check_every_s=check_every_s)

    async def current(self) -> Store:
        if time.monotonic() - self._checked < self._check_every_s:
            return self._store
        async with self._lock:
            if time.monotonic() - self._checked >= self._check_every_s:
                try:
                    versions = await self.pointer.get()
                    if versions.active != self.version:
                        self._store, self.strategy = await self._open(versions)
                        self._stores.append(self._store)
                        logger.info("projections: switched from version %r to %r (%s)", self.version,
                                    versions.active, self.strategy)
                        self.version = versions.active
                except Exception:
                    logger.exception("projections: the version pointer could not be read; staying on %r",
                                     self.version)
                self._checked = time.monotonic()
        return self._store

    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        await (await self.current()).apply(mutations, shard_id, sequence)

    async def applied(self) -> dict[str, str]:
        return await (await self.current()).applied()

    async def users(self, user_ids: Collection[str]) -> dict[str, User]:
        return await (await self.current()).users(user_ids)

    async def follower_ids(self, user_id: str) -> set[str]:
        return await (await self.current()).follower_ids(user_id)

    async def recent_posts(self, author_id: str, limit: int) -> list[Post]:
        return await (await self.current()).recent_posts(author_id, limit)

    async def following_count(self, user_id: str) -> int:
        return await (await self.current()).following_count(user_id)

    async def followers_page(self, user_id: str, limit: int, after: str | None) -> list[str]:
        return await (await self.current()).followers_page(user_id, limit, after)

    async def following_page(self, user_id: str, limit: int, after: str | None) -> list[str]:
        return await (await self.current()).following_page(user_id, limit, after)

    async def following_ids(self, user_id: str) -> list[str]:
        return await (await self.current()).following_ids(user_id)

    async def posts_page(self, author_id: str, limit: int, before: SortKey | None) -> list[Post]:
        return await (await self.current()).posts_page(author_id, limit, before)

    async def posts_of_authors(
        self, author_ids: Collection[str], limit: int, before: SortKey | None
    ) -> list[Post]:
        return await (await self.current()).posts_of_authors(author_ids, limit, before)

    async def posts_by_id(self, post_ids: Collection[str]) -> dict[str, Post]:
        return await (await self.current()).posts_by_id(post_ids)

    async def timeline_page(
        self, user_id: str, limit: int, before: SortKey | None
    ) -> list[TimelineEntry]:
        return await (await self.current()).timeline_page(user_id, limit, before)

    async def celebrity_followees(self, user_id: str) -> list[str]:
        return await (await self.current()).celebrity_followees(user_id)

    async def timeline_feed(self, user_id: str, limit: int, before: SortKey | None) -> list[FeedPost]:
        return await (await self.current()).timeline_feed(user_id, limit, before)

    async def authors_feed(
        self, author_ids: Collection[str], limit: int, before: SortKey | None
    ) -> list[FeedPost]:
        return await (await self.current()).authors_feed(author_ids, limit, before)

    async def hybrid_feed(self, user_id: str, limit: int, before: SortKey | None) -> list[FeedPost]:
        return await (await self.current()).hybrid_feed(user_id, limit, before)

    async def feed_stamp(self, user_id: str, authors: Sequence[str]) -> Hashable | None:
        return await (await self.current()).feed_stamp(user_id, authors)

    async def put_dead_letter(self, letter: DeadLetter) -> None:
        await (await self.current()).put_dead_letter(letter)

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        return await (await self.current()).dead_letters(limit)

    async def delete_dead_letter(self, shard_id: str, sequence: str) -> None:
        await (await self.current()).delete_dead_letter(shard_id, sequence)

    async def ping(self) -> None:
        await (await self.current()).ping()

    async def close(self) -> None:
        stores, self._stores = self._stores, []
        for store in stores:
            await store.close()
        await self.pointer.close()


class SwitchingTimelineReader(TimelineReader):
    """The timelines of the version a SwitchingStore is on, read with that version's strategy."""

    def __init__(self, store: SwitchingStore) -> None:
        super().__init__(store, store.strategy)
        self._switching = store

    @property
    def strategy(self) -> Strategy:
        return self._switching.strategy

    async def page(self, user_id: str, limit: int, cursor: str | None = None) -> TimelinePage:
        store = await self._switching.current()
        # No await between the two: the store and the strategy are the same version's.
        return await TimelineReader(store, self._switching.strategy).page(user_id, limit, cursor)
