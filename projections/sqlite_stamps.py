"""Feed stamps: how a reader of the SQLite store knows, by one cheap look, that a cached timeline
page is still exactly right (`SQLiteStore.feed_stamp`, used by `api.timeline_cache`).

What a page of R's push or hybrid timeline shows depends on
- R's timeline rows and R's following list: the *reader stamp* of R;
- the posts of the celebrities R follows: their *author stamps*;
- who is a celebrity and everyone's handle: the *epoch*, the author stamp of "" (no user id is
  empty: events refuse it).
Post bodies never change (a post is created or deleted, never edited), so they need no stamp.

Every `SQLiteStore.apply` bumps, in its own transaction, the stamps its mutations touch. Stamps
only grow (`stamp + 1` under the write lock, so two processors writing one file never give the
same value twice) and no row is ever deleted, so a stamp that was read once and reads the same
later means nothing it covers changed in between.

The cost on the write side is one upsert per touched timeline, follower and author per batch
(deduplicated within the batch), and one read of the users a batch rewrites, to notice a
handle or celebrity flag that changes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from operator import attrgetter

from projections.records import (
    DeleteFollow,
    DeletePost,
    DeleteTimelineEntries,
    Mutation,
    PutFollow,
    PutPost,
    PutTimelineEntries,
    PutUser,
    TrimTimelines,
)

_OWNER = attrgetter("user_id")
EPOCH = ""  # the author stamp every page depends on: celebrity flags and handles

DDL = [
    "CREATE TABLE IF NOT EXISTS reader_stamps (user_id TEXT NOT NULL PRIMARY KEY,"
    " stamp INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS author_stamps (user_id TEXT NOT NULL PRIMARY KEY,"
    " stamp INTEGER NOT NULL) WITHOUT ROWID",
]
_BUMP = "INSERT INTO {table} VALUES (?, 1) ON CONFLICT (user_id) DO UPDATE SET stamp = stamp + 1"
BUMP_READER = _BUMP.format(table="reader_stamps")
BUMP_AUTHOR = _BUMP.format(table="author_stamps")
READER_STAMP = "SELECT stamp FROM reader_stamps WHERE user_id = ?"
AUTHOR_STAMP = "SELECT stamp FROM author_stamps WHERE user_id = ?"


def touched(mutations: Sequence[Mutation]) -> tuple[set[str], set[str], dict[str, tuple[str, bool]]]:
    """The readers and authors whose stamps the mutations change, and the users they rewrite
    with the (handle, celebrity) each ends the batch with."""
    readers: set[str] = set()
    authors: set[str] = set()
    users: dict[str, tuple[str, bool]] = {}
    for mutation in mutations:
        match mutation:
            case PutTimelineEntries(entries):
                readers.update(map(_OWNER, entries))  # a push has hundreds: a C loop
            case DeleteTimelineEntries(keys):
                readers.update(k[0] for k in keys)
            case TrimTimelines(user_ids, _):
                readers.update(user_ids)
            case PutFollow(follower, _) | DeleteFollow(follower, _):
                readers.add(follower)
            case PutPost(post):
                authors.add(post.author_id)
            case DeletePost(author_id, _, _):
                authors.add(author_id)
            case PutUser(user):
                users[user.user_id] = (user.handle, user.celebrity)
    return readers, authors, users


def bump(conn: sqlite3.Connection, mutations: Sequence[Mutation]) -> None:
    """Bump the stamps of what `mutations` change; call it inside their transaction, before
    they are written (it compares the users they rewrite with the stored ones)."""
    readers, authors, users = touched(mutations)
    if users and _changes_a_flag_or_handle(conn, users):
        authors.add(EPOCH)
    if readers:
        conn.executemany(BUMP_READER, [(r,) for r in sorted(readers)])
    if authors:
        conn.executemany(BUMP_AUTHOR, [(a,) for a in sorted(authors)])


def _changes_a_flag_or_handle(conn: sqlite3.Connection, users: dict[str, tuple[str, bool]]) -> bool:
    stored = {
        user_id: (handle, bool(celebrity))
        for user_id, handle, celebrity in conn.execute(
            "SELECT user_id, handle, celebrity FROM users WHERE user_id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(users)),),
        )
    }
    # A new user changes nothing a cached page shows unless it starts as a celebrity (a page
    # showing its posts with an empty handle is never cached).
    return any(
        stored.get(user_id, (handle, False)) != (handle, celebrity)
        for user_id, (handle, celebrity) in users.items()
    )
