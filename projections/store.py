"""The Store port: where projections live (SQLite embedded, DynamoDB on AWS).

Adapters: `projections.sqlite_store.SQLiteStore`, `projections.dynamodb_store.DynamoDBStore`,
both passing `tests/projections/store_contract.py`. Table layouts come from
`projections.tables` (also read by the Terraform generator).

`before` arguments are exclusive upper bounds in (ts, post_id) order, so pages are stable while
newer items arrive. `after` arguments on id lists are exclusive lower bounds in id order.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from typing import Protocol

from projections.records import DeadLetter, FeedPost, Mutation, Post, SortKey, TimelineEntry, User


class StoreUnavailable(Exception):
    """The store refused after the adapter's own retries (throttling, locked database)."""


class Store(Protocol):
    # --- writes (the runner) ---------------------------------------------------------------
    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        """Make the mutations durable, then record `sequence` as applied for `shard_id`.

        The applied mark is written last (SQLite: in the same transaction), so a reader of
        `applied()` never sees a sequence whose effects are not all there.

        Nothing is written when the shard's mark is already past `sequence`: that batch comes
        from a worker whose lease moved while it had the batch in hand, and the new owner's later
        batches are in; writing it would undo them (tests/faults/test_leases.py). A batch at the
        mark is applied again (a redelivery: the same effects). SQLite and memory check under
        their write lock. DynamoDB reads the mark first, which narrows the window but does not
        close it (a known limit: closing it needs a condition on every item).
        """
        ...

    async def applied(self) -> dict[str, str]:
        """The last applied sequence per shard (read-your-writes and replay verification)."""
        ...

    # --- state for the folds (all of it written from the user's own shard) -----------------
    async def users(self, user_ids: Collection[str]) -> dict[str, User]: ...

    async def follower_ids(self, user_id: str) -> set[str]: ...

    async def recent_posts(self, author_id: str, limit: int) -> list[Post]:
        """The author's newest posts, newest first."""
        ...

    # --- reads (the API) -------------------------------------------------------------------
    async def following_count(self, user_id: str) -> int: ...

    async def followers_page(self, user_id: str, limit: int, after: str | None) -> list[str]: ...

    async def following_page(self, user_id: str, limit: int, after: str | None) -> list[str]: ...

    async def following_ids(self, user_id: str) -> list[str]: ...

    async def posts_page(self, author_id: str, limit: int, before: SortKey | None) -> list[Post]: ...

    async def posts_of_authors(
        self, author_ids: Collection[str], limit: int, before: SortKey | None
    ) -> list[Post]:
        """The newest `limit` posts among all the authors', newest first (the pull merge)."""
        ...

    async def posts_by_id(self, post_ids: Collection[str]) -> dict[str, Post]: ...

    async def timeline_page(
        self, user_id: str, limit: int, before: SortKey | None
    ) -> list[TimelineEntry]: ...

    # --- a timeline page in few calls (projections.timeline; projections.feed composes these
    # from the calls above for adapters without a cheaper way) ----------------------------------
    async def celebrity_followees(self, user_id: str) -> list[str]:
        """The users `user_id` follows whose record says celebrity (hybrid pulls them), in id order."""
        ...

    async def timeline_feed(self, user_id: str, limit: int, before: SortKey | None) -> list[FeedPost]:
        """The newest `limit` posts of the pushed timeline before `before`, newest first, with
        handles; entries whose post is gone are skipped (the page still fills from older ones)."""
        ...

    async def authors_feed(
        self, author_ids: Collection[str], limit: int, before: SortKey | None
    ) -> list[FeedPost]:
        """`posts_of_authors` with handles."""
        ...

    async def hybrid_feed(self, user_id: str, limit: int, before: SortKey | None) -> list[FeedPost]:
        """The hybrid page: `timeline_feed` merged with `authors_feed` of the user's
        `celebrity_followees`, deduplicated by post id, the newest `limit`, newest first."""
        ...

    async def feed_stamp(self, user_id: str, authors: Sequence[str]) -> Hashable | None:
        """A value that changes whenever a push or hybrid page of `user_id`'s timeline could
        change, given `authors`, the celebrities it pulls (`celebrity_followees` when the page was
        read): read it before reading a page, keep both, and while a later read gives an equal
        value the page is still exact (api.timeline_cache) — as of a bounded time ago, the
        adapter's to say (SQLiteStore: 1 ms). None: this store cannot tell."""
        ...

    # --- dead letters ------------------------------------------------------------------------
    async def put_dead_letter(self, letter: DeadLetter) -> None: ...

    async def dead_letters(self, limit: int) -> list[DeadLetter]: ...

    async def delete_dead_letter(self, shard_id: str, sequence: str) -> None: ...

    # --- lifecycle -------------------------------------------------------------------------
    async def ping(self) -> None:
        """Raise StoreUnavailable when the store does not answer (readiness)."""
        ...

    async def close(self) -> None: ...
