"""The state the folds need, as plain data, and how the runner loads it through the Store port.

All of it belongs to the partition-key users of the batch (a user's record, follower set and
posts are written only from that user's shard), so what is loaded is exactly what the shard's
earlier batches left, and the fold evolves it event by event.

What is loaded for a user U of the batch:
- U's User record (None before U registers);
- U's follower set, unless no event needs it (None then: pull, or a hybrid celebrity, posting);
- U's newest posts, as many as the batch's follows (backfill), unfollows (cleanup, demotion)
  need, plus one per PostDeleted of U's (so a delete cannot shorten the list below the need);
- every post named by a PostCreated or PostDeleted, as stored (known_posts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from processors.settings import FoldSettings
from projections.records import Post, User
from projections.store import Store
from streams.events import (
    Event,
    PostCreated,
    PostDeleted,
    UserFollowed,
    UserRegistered,
    UserUnfollowed,
    partition_key,
)


@dataclass(slots=True)
class UserState:
    user: User | None
    followers: set[str] | None  # None: not loaded (no event of the batch needs it)
    # Newest first: at least the newest `_posts_depth` of the user's; None when no event of the
    # batch reads them (then the fold does not keep them up to date either).
    posts: list[Post] | None
    # The follower set sorted, kept by the fold while the set does not change (None: not yet).
    sorted_followers: list[str] | None = None


@dataclass(slots=True)
class BatchState:
    users: dict[str, UserState]
    known_posts: dict[str, Post]  # post id -> the live post, for creates and deletes


def pushed(user: User | None, settings: FoldSettings) -> bool:
    """Whether this author's posts are written into followers' timelines."""
    if settings.strategy == "push":
        return True
    if settings.strategy == "pull":
        return False
    return user is None or not user.celebrity


def _posts_depth(events: Sequence[Event], user_id: str, settings: FoldSettings) -> int:
    if settings.strategy == "pull":
        return 0
    depth = 0
    deletes = 0
    for event in events:
        match event:
            case UserFollowed():
                depth = max(depth, settings.backfill_depth)
            case UserUnfollowed():
                depth = max(depth, settings.cleanup_depth)
            case PostDeleted():
                deletes += 1
            case _:
                pass
    return depth + deletes if depth else 0


def _needs_followers(events: Sequence[Event], user: User | None, settings: FoldSettings) -> bool:
    for event in events:
        match event:
            case UserRegistered() | UserFollowed() | UserUnfollowed():
                return True
            case PostDeleted() if settings.strategy != "pull":
                return True
            case PostCreated() if pushed(user, settings):
                return True
            case _:
                pass
    return False


async def load_state(store: Store, events: Sequence[Event], settings: FoldSettings) -> BatchState:
    by_user: dict[str, list[Event]] = {}
    for event in events:
        by_user.setdefault(partition_key(event), []).append(event)
    users = await store.users(by_user.keys())
    # isinstance with a tuple, not a union type: several times faster, once per event.
    post_ids = {e.data.post_id for e in events if isinstance(e, (PostCreated, PostDeleted))}
    known_posts = await store.posts_by_id(post_ids) if post_ids else {}

    async def load(user_id: str, own: list[Event]) -> UserState:
        user = users.get(user_id)
        followers = (
            await store.follower_ids(user_id) if _needs_followers(own, user, settings) else None
        )
        depth = _posts_depth(own, user_id, settings)
        posts = await store.recent_posts(user_id, depth) if depth else None
        return UserState(user, followers, posts)

    states = await asyncio.gather(*(load(u, own) for u, own in by_user.items()))
    return BatchState(dict(zip(by_user, states, strict=True)), known_posts)
