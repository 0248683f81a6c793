"""MemoryStore: the Store port in plain dicts, for unit tests of the folds and the API, and the
state a bulk replay folds into before writing it out in key order (`rows`, fanline.replay).

Reads are simple rather than fast (lists are sorted when read); writes are fast, as a bulk
replay applies millions of timeline entries: each timeline is a dict by key plus its keys in
ascending order, so a trim cuts off only what it removes. Nothing survives the process.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from itertools import chain, groupby, repeat
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

import msgspec

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
from projections.tables import TableSpec, sequence_position, sort_key

# Posts and timeline entries share the (ts, post_id) order.
T = TypeVar("T", Post, TimelineEntry)


def _newest_first(
    items: Iterable[T], limit: int, before: SortKey | None
) -> list[T]:
    kept = (item for item in items if before is None or item.key < before)
    return heapq.nlargest(limit, kept, key=lambda item: item.key)


def _page(ids: Iterable[str], limit: int, after: str | None) -> list[str]:
    return sorted(i for i in ids if after is None or i > after)[:limit]


_USER_ID = attrgetter("user_id")
_ENTRY_KEY = attrgetter("ts", "post_id")  # TimelineEntry.key, without a Python call per entry
_AUTHOR_ID = attrgetter("author_id")
_TS, _POST_ID = itemgetter(0), itemgetter(1)  # of a SortKey


def _check_ts(timestamps: Iterable[int]) -> None:
    """sort_key's check of a ts, for many at once (min and max run in C: a push has thousands)."""
    values = list(timestamps)
    if values:
        for ts in (min(values), max(values)):
            sort_key((ts, ""))


def _check_put_post(mutation: PutPost) -> None:
    sort_key(mutation.post.key)


def _check_delete_post(mutation: DeletePost) -> None:
    sort_key((mutation.ts, mutation.post_id))


# One owner's entries of a put: the owner, the entries' keys and their authors.
_Owned = tuple[str, list[SortKey], list[str]]


def _check_put_entries(mutation: PutTimelineEntries) -> list[_Owned]:
    """The entries by owner, for the apply: read once, as the runner sorts them by owner and
    so they lie all over memory (a pass just for the check cost a tenth of the apply)."""
    owned: list[_Owned] = []
    for user_id, group in groupby(mutation.entries, _USER_ID):
        entries = list(group)
        owned.append((user_id, list(map(_ENTRY_KEY, entries)), list(map(_AUTHOR_ID, entries))))
    _check_ts(map(_TS, chain.from_iterable(keys for _, keys, _ in owned)))
    return owned


def _check_delete_entries(mutation: DeleteTimelineEntries) -> None:
    _check_ts(ts for _, ts, _ in mutation.keys)


def _check_trim(mutation: TrimTimelines) -> None:
    if mutation.cap < 0:
        raise ValueError(f"timeline cap {mutation.cap} is negative")


def _nothing_to_check(mutation: Mutation) -> None:
    return None


# By type, not a match statement: a match tries each case in turn, and a replay checks and
# applies millions of mutations (a world's follows: one PutFollow each).
# A check returns what the apply of the mutation needs from it, if anything.
_CHECKS: dict[type, Callable[[Any], Any]] = {
    PutUser: _nothing_to_check, PutFollow: _nothing_to_check, DeleteFollow: _nothing_to_check,
    PutPost: _check_put_post, DeletePost: _check_delete_post, PutTimelineEntries: _check_put_entries,
    DeleteTimelineEntries: _check_delete_entries, TrimTimelines: _check_trim,
}


def _check(mutation: Mutation) -> Any:
    """Raise ValueError for what the other stores cannot key (sort_key checks the ts), and
    TypeError for what is not a mutation."""
    check = _CHECKS.get(type(mutation))
    if check is None:
        raise TypeError(f"not a mutation: {mutation!r}")
    return check(mutation)


class _Timeline:
    """One user's timeline: each entry's author by the entry's key, and the keys put in
    ascending order (it may hold keys since deleted or trimmed, and repeats: skipped when
    trimmed), so a trim cuts the oldest off the front of a list, in C. Keys are shared by every
    timeline a post is in (MemoryStore._keys): an entry costs a dict slot and a list slot,
    ~60 bytes, which a 100K world's tens of millions of entries need."""

    __slots__ = ("authors", "keys")

    def __init__(self) -> None:
        self.authors: dict[SortKey, str] = {}
        self.keys: list[SortKey] = []

    def put(self, keys: list[SortKey], authors: Iterable[str]) -> None:
        self.authors.update(zip(keys, authors, strict=True))
        new = sorted(keys)
        held = self.keys
        if not new or not held or new[0] > held[-1]:
            held += new  # all newer than what is held: the common case
        else:  # merge from where the oldest new key goes (other shards' batches overlap in time)
            at = bisect_left(held, new[0])
            held[at:] = sorted(held[at:] + new)

    def delete(self, key: SortKey) -> None:
        self.authors.pop(key, None)
        if len(self.keys) > 2 * len(self.authors) + 64:  # mostly deleted keys: start afresh
            self.keys = sorted(self.authors)

    def trim(self, cap: int) -> None:
        """Keep the newest `cap`: the list's first live keys are the oldest entries."""
        authors, keys = self.authors, self.keys
        while len(authors) > cap and keys:  # every live key is in `keys`
            excess = len(authors) - cap  # at least this many keys go (more if some are stale)
            oldest = keys[:excess]
            del keys[:excess]
            for key in oldest:
                authors.pop(key, None)

    def ordered(self) -> list[SortKey]:
        """The keys of the entries, ascending, each once."""
        if len(self.keys) != len(self.authors):  # it holds deleted or trimmed keys, or repeats
            self.keys = sorted(self.authors)
        return self.keys  # every entry's key is in it: as long, it holds nothing else

    def entries(self, user_id: str) -> Iterator[TimelineEntry]:
        for (ts, post_id), author_id in self.authors.items():
            yield TimelineEntry(user_id, ts, post_id, author_id)


class HandedTimelines(msgspec.Struct, array_like=True):
    """Timelines one MemoryStore hands another (`take_timelines`, `put_timelines`): each post's
    key and each author once, and each timeline's entries as indices into them (a post is in
    hundreds of timelines: a fifth of the bytes of (ts, post_id, author) per entry, 7.6 MB for
    the 5K world's 1.2 million, and each key is made once where they go)."""

    keys: list[SortKey]
    authors: list[str]
    timelines: list[tuple[str, list[int], list[int]]]  # owner, its keys ascending, their authors


class MemoryStore(feed.ComposedFeeds):
    def __init__(self) -> None:
        self._applied: dict[str, str] = {}
        self._users: dict[str, User] = {}
        self._followers: dict[str, set[str]] = {}
        self._following: dict[str, set[str]] = {}
        self._posts: dict[str, Post] = {}
        self._posts_by_author: dict[str, dict[SortKey, Post]] = {}
        self._timelines: dict[str, _Timeline] = {}
        self._keys: dict[SortKey, SortKey] = {}  # one tuple per timeline key, shared
        self._ids: dict[str, str] = {}  # one str per user id of the follower sets, shared
        self._dead: dict[tuple[str, str], DeadLetter] = {}

    # --- writes ----------------------------------------------------------------------------
    async def apply(self, mutations: Sequence[Mutation], shard_id: str, sequence: str) -> None:
        # Refuse bad input before changing anything, as the other stores do.
        sequence_position(sequence)
        checked = [_check(mutation) for mutation in mutations]
        current = self._applied.get(shard_id)
        if current is not None and int(current) > int(sequence):
            return  # a late writer's batch: a later one of the shard is in (Store.apply)
        appliers = self._APPLY  # every type is there: _check refused any other
        for mutation, ready in zip(mutations, checked, strict=True):
            appliers[type(mutation)](self, mutation, ready)
        # Sequence numbers are decimal strings: compare them as numbers, and never go back.
        if current is None or int(sequence) > int(current):
            self._applied[shard_id] = sequence

    def _put_user(self, mutation: PutUser, _: None) -> None:
        self._users[mutation.user.user_id] = mutation.user

    def _put_follow(self, mutation: PutFollow, _: None) -> None:
        # One str per user id, shared by every set it is in: a world's follows decode a new
        # one per event, and owners compared by identity keep the timeline writes in cache.
        ids = self._ids.setdefault
        follower_id = ids(mutation.follower_id, mutation.follower_id)
        followee_id = ids(mutation.followee_id, mutation.followee_id)
        self._followers.setdefault(followee_id, set()).add(follower_id)
        self._following.setdefault(follower_id, set()).add(followee_id)

    def _delete_follow(self, mutation: DeleteFollow, _: None) -> None:
        self._followers.get(mutation.followee_id, set()).discard(mutation.follower_id)
        self._following.get(mutation.follower_id, set()).discard(mutation.followee_id)

    def _put_post(self, mutation: PutPost, _: None) -> None:
        post = mutation.post
        self._posts[post.post_id] = post
        self._posts_by_author.setdefault(post.author_id, {})[post.key] = post

    def _delete_post(self, mutation: DeletePost, _: None) -> None:
        self._posts.pop(mutation.post_id, None)
        self._posts_by_author.get(mutation.author_id, {}).pop((mutation.ts, mutation.post_id), None)

    def _put_entries(self, mutation: PutTimelineEntries, owned: list[_Owned]) -> None:
        # A runner's pushes come grouped by owner (processors.runner.coalesce).
        timelines, shared = self._timelines, self._keys.setdefault
        for user_id, keys, authors in owned:
            timeline = timelines.get(user_id)
            if timeline is None:
                timeline = timelines[user_id] = _Timeline()
            timeline.put(list(map(shared, keys, keys)), authors)

    def _delete_entries(self, mutation: DeleteTimelineEntries, _: None) -> None:
        for user_id, ts, post_id in mutation.keys:
            if (timeline := self._timelines.get(user_id)) is not None:
                timeline.delete((ts, post_id))

    def _trim(self, mutation: TrimTimelines, _: None) -> None:
        for user_id in mutation.user_ids:
            if (timeline := self._timelines.get(user_id)) is not None:
                timeline.trim(mutation.cap)

    # Each with the mutation and what its check returned.
    _APPLY: dict[type, Callable[[MemoryStore, Any, Any], None]] = {
        PutUser: _put_user, PutFollow: _put_follow, DeleteFollow: _delete_follow, PutPost: _put_post,
        DeletePost: _delete_post, PutTimelineEntries: _put_entries, DeleteTimelineEntries: _delete_entries,
        TrimTimelines: _trim,
    }

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
        timeline = self._timelines.get(user_id)
        return _newest_first(timeline.entries(user_id) if timeline else (), limit, before)

    # --- dead letters ----------------------------------------------------------------------
    async def put_dead_letter(self, letter: DeadLetter) -> None:
        self._dead[(letter.shard_id, letter.sequence)] = letter

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        ordered = sorted(self._dead.values(), key=lambda d: (d.shard_id, int(d.sequence)))
        return ordered[:limit]

    async def delete_dead_letter(self, shard_id: str, sequence: str) -> None:
        self._dead.pop((shard_id, sequence), None)

    # --- timelines handed between bulk replay workers (fanline.bulk_workers) -----------------
    def timeline_sizes(self) -> dict[str, int]:
        """The entries of each timeline, by owner."""
        return {owner: len(timeline.authors) for owner, timeline in self._timelines.items()}

    def take_timelines(self, taken: Callable[[str], bool]) -> HandedTimelines:
        """Remove the timelines of the owners `taken`, and return their entries."""
        owners = sorted(owner for owner in self._timelines if taken(owner))
        timelines = [self._timelines.pop(owner) for owner in owners]
        ordered = [timeline.ordered() for timeline in timelines]
        keys = list(set().union(*ordered))
        key_index = dict(zip(keys, range(len(keys)), strict=True))
        authors = list(set().union(*(timeline.authors.values() for timeline in timelines)))
        author_index = dict(zip(authors, range(len(authors)), strict=True))
        return HandedTimelines(keys, authors, [
            (owner, list(map(key_index.__getitem__, owned)),
             list(map(author_index.__getitem__, map(timeline.authors.__getitem__, owned))))
            for owner, timeline, owned in zip(owners, timelines, ordered, strict=True)
        ])

    def put_timelines(self, handed: HandedTimelines, cap: int) -> None:
        """Add the entries another store's `take_timelines` returned, each timeline trimmed to its
        newest `cap` after: the newest `cap` of every entry put, as trimming after each batch
        keeps (the other store had trimmed its entries to `cap` too)."""
        keys = list(map(self._keys.setdefault, handed.keys, handed.keys))
        authors = list(map(self._ids.setdefault, handed.authors, handed.authors))
        timelines = self._timelines
        for owner, key_indices, author_indices in handed.timelines:
            timeline = timelines.get(owner)
            if timeline is None:
                timeline = timelines[owner] = _Timeline()
            timeline.put(list(map(keys.__getitem__, key_indices)), map(authors.__getitem__, author_indices))
            timeline.trim(cap)

    # --- export (a bulk replay writes these into an empty store) ----------------------------
    def rows(self, spec: TableSpec) -> Iterator[tuple[Any, ...]]:
        """Every item of a table as a row of its attributes in `projections.tables` order, in
        key order (str order is SQLite's and DynamoDB's order of UTF-8 keys), as the SQLite
        store keeps it: sort keys as `sort_key` strings, booleans as 0 or 1. The follow edges'
        and the timelines' rows, millions of them, are built in C (zip, map and chain over a
        user's items) rather than yielded one by one."""
        match spec.name:
            case "followers" | "following":
                edges = self._followers if spec.name == "followers" else self._following
                return chain.from_iterable(
                    zip(repeat(user_id), sorted(edges[user_id])) for user_id in sorted(edges)
                )
            case "timelines":
                # A post's key is in hundreds of timelines: its text is made once.
                texts = {key: sort_key(key) for key in self._keys}

                def timeline_rows(user_id: str) -> Iterator[tuple[Any, ...]]:
                    timeline = self._timelines[user_id]
                    keys = timeline.ordered()
                    return zip(
                        repeat(user_id), map(texts.__getitem__, keys), map(_POST_ID, keys),
                        map(timeline.authors.__getitem__, keys), map(_TS, keys),
                    )

                return chain.from_iterable(map(timeline_rows, sorted(self._timelines)))
            case _:
                return self._item_rows(spec)

    def _item_rows(self, spec: TableSpec) -> Iterator[tuple[Any, ...]]:
        match spec.name:
            case "users":
                for user_id in sorted(self._users):
                    u = self._users[user_id]
                    yield (u.user_id, u.handle, u.display_name, u.followers, int(u.celebrity))
            case "posts":
                for author_id in sorted(self._posts_by_author):
                    posts = self._posts_by_author[author_id]
                    for key in sorted(posts):
                        p = posts[key]
                        yield (author_id, sort_key(key), p.post_id, p.body, p.ts)
            case "posts_by_id":
                for post_id in sorted(self._posts):
                    p = self._posts[post_id]
                    yield (post_id, p.author_id, p.body, p.ts)
            case "applied":
                for shard_id in sorted(self._applied):
                    sequence = self._applied[shard_id]
                    yield (shard_id, sequence, sequence_position(sequence))
            case "dead_letters":
                for shard_id, sequence in sorted(self._dead):
                    d = self._dead[(shard_id, sequence)]
                    yield (d.shard_id, d.sequence, d.error, d.payload, d.attempts, d.failed_at_ms)
            case _:
                raise ValueError(f"not a projection table: {spec.name!r}")

    # --- lifecycle -------------------------------------------------------------------------
    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
