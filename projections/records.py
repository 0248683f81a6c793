"""The projection records and the mutations the folds emit.

Every mutation is absolute and idempotent (a put of a whole item or a delete of a key), so
applying a batch's mutations twice, or half and then all, leaves the same state: that is what
makes at-least-once delivery safe. Counts are written as values computed from the follower
set, never as increments.

Records and mutations are frozen msgspec Structs with gc=False (they hold only strings, ints and
other such records, so they cannot be in a cycle): a replay builds millions, and a Struct is
built several times faster than a frozen dataclass, whose __init__ sets each field through
object.__setattr__.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

# Timelines and post lists are ordered by (ts, post_id), newest first.
SortKey = tuple[int, str]


class User(msgspec.Struct, frozen=True, gc=False):
    user_id: str
    handle: str
    display_name: str
    followers: int = 0
    celebrity: bool = False


class Post(msgspec.Struct, frozen=True, gc=False):
    post_id: str
    author_id: str
    body: str
    ts: int

    @property
    def key(self) -> SortKey:
        return (self.ts, self.post_id)


class TimelineEntry(msgspec.Struct, frozen=True, gc=False):
    """A msgspec Struct, not a dataclass: a push makes one per follower (100 000 per batch), and
    a Struct is built ~10x faster and, with gc=False (it holds only str and int, so it cannot
    be in a cycle), is never scanned by the garbage collector, which was a third of a push."""

    user_id: str  # whose timeline
    ts: int
    post_id: str
    author_id: str

    @property
    def key(self) -> SortKey:
        return (self.ts, self.post_id)


class FeedPost(msgspec.Struct, frozen=True, gc=False):
    """A post as a timeline page shows it, with its author's handle ("" if never registered).

    A msgspec Struct, not a dataclass: a page builds fifty of these on every read, a frozen
    dataclass is several times slower to construct, and the API encodes them as they are (they
    are the page's items; gc=False: they hold only strings and ints, so no cycles to collect).
    """

    post_id: str
    author_id: str
    author_handle: str
    body: str
    created_at: int  # ms since epoch: the post's ts

    @property
    def key(self) -> SortKey:
        return (self.created_at, self.post_id)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    shard_id: str
    sequence: str
    error: str
    payload: bytes
    attempts: int
    failed_at_ms: int


# --- mutations -----------------------------------------------------------------------------


class PutUser(msgspec.Struct, frozen=True, gc=False):
    user: User


class PutFollow(msgspec.Struct, frozen=True, gc=False):
    follower_id: str
    followee_id: str


class DeleteFollow(msgspec.Struct, frozen=True, gc=False):
    follower_id: str
    followee_id: str


class PutPost(msgspec.Struct, frozen=True, gc=False):
    post: Post


class DeletePost(msgspec.Struct, frozen=True, gc=False):
    author_id: str
    post_id: str
    ts: int


class PutTimelineEntries(msgspec.Struct, frozen=True, gc=False):
    entries: tuple[TimelineEntry, ...]


class DeleteTimelineEntries(msgspec.Struct, frozen=True, gc=False):
    # (timeline owner, ts, post_id)
    keys: tuple[tuple[str, int, str], ...]


class TrimTimelines(msgspec.Struct, frozen=True, gc=False):
    """Keep only the newest `cap` entries of each named timeline."""

    user_ids: tuple[str, ...]
    cap: int


Mutation = (
    PutUser | PutFollow | DeleteFollow | PutPost | DeletePost | PutTimelineEntries
    | DeleteTimelineEntries | TrimTimelines
)
