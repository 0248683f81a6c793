"""The pure folds: one event and the state before it in, projection mutations out.

No I/O, no clock, no randomness: the same state and event always give the same mutations.
`fold_event` evolves the state in place, but only after every mutation is computed, so an
event that raises leaves the state as it was.

Each event's mutations come consequences first, the record that tells what happened last
(timeline entries, then the post or edge, then the user's counts). A store that applies a
batch in order and crashes part-way therefore leaves a state from which folding the batch
again produces what is missing: when the user record says "demoted", the demotion's pushes
are already there.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain, repeat
from typing import Any

from processors.settings import FoldSettings
from processors.state import BatchState, UserState, pushed
from projections.records import (
    DeleteFollow,
    DeletePost,
    DeleteTimelineEntries,
    Mutation,
    Post,
    PutFollow,
    PutPost,
    PutTimelineEntries,
    PutUser,
    TimelineEntry,
    TrimTimelines,
    User,
)
from streams.events import (
    Event,
    PostCreated,
    PostDeleted,
    UserFollowed,
    UserRegistered,
    UserUnfollowed,
)


class Rejected(ValueError):
    """An event that can never be applied (bad input): dead-lettered at once, not retried."""


def is_celebrity(followers: int, was_celebrity: bool, threshold: int) -> bool:
    """Becomes a celebrity at `threshold` followers; stops being one only below 90 % of it."""
    if followers >= threshold:
        return True
    return was_celebrity and followers * 10 >= threshold * 9


def fold_event(state: BatchState, event: Event, settings: FoldSettings) -> list[Mutation]:
    fold: Callable[[BatchState, Any, FoldSettings], list[Mutation]] = _FOLDS[type(event)]
    return fold(state, event, settings)


def _followers(user_state: UserState) -> set[str]:
    if user_state.followers is None:
        raise RuntimeError("follower set not loaded for this batch (processors.state bug)")
    return user_state.followers


def _posts(user_state: UserState) -> list[Post]:
    if user_state.posts is None:
        raise RuntimeError("recent posts not loaded for this batch (processors.state bug)")
    return user_state.posts


def _sorted_followers(user_state: UserState) -> list[str]:
    """The follower set in order, sorted once per batch while it does not change (a user posts
    several times in a batch; a follow or unfollow forgets it)."""
    if user_state.sorted_followers is None:
        user_state.sorted_followers = sorted(_followers(user_state))
    return user_state.sorted_followers


def _with_count(user: User | None, followers: int, settings: FoldSettings) -> User | None:
    if user is None:
        return None  # counts are derived from the follower set when the user registers
    celebrity = is_celebrity(followers, user.celebrity, settings.celebrity_threshold)
    # Built directly: dataclasses.replace costs several times more, once per follow.
    return User(user.user_id, user.handle, user.display_name, followers, celebrity)


def _entries(owners: list[str], posts: list[Post]) -> tuple[TimelineEntry, ...]:
    # map over repeat(): half the cost of a generator, and a post can have 100 000 owners.
    return tuple(chain.from_iterable(
        map(TimelineEntry, owners, repeat(p.ts), repeat(p.post_id), repeat(p.author_id)) for p in posts
    ))


def _registered(state: BatchState, event: UserRegistered, settings: FoldSettings) -> list[Mutation]:
    data = event.data
    user_state = state.users[data.user_id]
    followers = len(_followers(user_state))
    was = user_state.user is not None and user_state.user.celebrity
    user = User(
        data.user_id, data.handle, data.display_name, followers,
        is_celebrity(followers, was, settings.celebrity_threshold),
    )
    user_state.user = user
    return [PutUser(user)]


def _followed(state: BatchState, event: UserFollowed, settings: FoldSettings) -> list[Mutation]:
    follower, followee = event.data.follower_id, event.data.followee_id
    user_state = state.users[followee]
    followers = _followers(user_state)
    if follower == followee:
        return []  # self-follows are ignored
    # A repeated follow is folded like the first: after a partial apply the edge may be there
    # without the count or the backfill, and writing them again is harmless.
    user = _with_count(user_state.user, len(followers) + (follower not in followers), settings)
    mutations: list[Mutation] = []
    if pushed(user, settings):
        recent = _posts(user_state)[: settings.backfill_depth]
        if recent:  # none yet: nothing to build (a world's follows mostly come before its posts)
            backfill = _entries([follower], recent)
            mutations += [PutTimelineEntries(backfill), TrimTimelines((follower,), settings.timeline_cap)]
    mutations.append(PutFollow(follower, followee))
    if user is not None:
        mutations.append(PutUser(user))
    followers.add(follower)
    user_state.sorted_followers = None
    user_state.user = user
    return mutations


def _unfollowed(state: BatchState, event: UserUnfollowed, settings: FoldSettings) -> list[Mutation]:
    follower, followee = event.data.follower_id, event.data.followee_id
    if follower == followee:
        return []
    user_state = state.users[followee]
    followers = _followers(user_state)
    remaining = followers - {follower}
    before = user_state.user
    user = _with_count(before, len(remaining), settings)
    mutations: list[Mutation] = []
    if settings.strategy != "pull":
        # Always, even for a follow we never saw: removing absent entries is harmless.
        cleanup = tuple((follower, p.ts, p.post_id) for p in _posts(user_state)[: settings.cleanup_depth])
        if cleanup:
            mutations.append(DeleteTimelineEntries(cleanup))
        demoted = before is not None and before.celebrity and user is not None and not user.celebrity
        if demoted and settings.strategy == "hybrid" and remaining:
            # Its posts are no longer pulled at read time: push them so none vanishes.
            owners = sorted(remaining)
            entries = _entries(owners, _posts(user_state)[: settings.backfill_depth])
            if entries:
                trim = TrimTimelines(tuple(owners), settings.timeline_cap)
                mutations += [PutTimelineEntries(entries), trim]
    mutations.append(DeleteFollow(follower, followee))
    if user is not None:
        mutations.append(PutUser(user))
    followers.discard(follower)
    user_state.sorted_followers = None
    user_state.user = user
    return mutations


def _post_created(state: BatchState, event: PostCreated, settings: FoldSettings) -> list[Mutation]:
    data = event.data
    author = data.author_id
    known = state.known_posts.get(data.post_id)
    if known is not None and known.author_id != author:
        raise Rejected(f"post id {data.post_id!r} already belongs to user {known.author_id!r}")
    # A repeated create (redelivery after a partial apply) re-delivers the post as stored.
    post = known if known is not None else Post(data.post_id, author, data.body, event.ts)
    user_state = state.users[author]
    mutations: list[Mutation] = []
    if settings.strategy != "pull":
        owners = [author]
        if pushed(user_state.user, settings):
            owners += _sorted_followers(user_state)
        trim = TrimTimelines(tuple(owners), settings.timeline_cap)
        mutations += [PutTimelineEntries(_entries(owners, [post])), trim]
    mutations.append(PutPost(post))
    state.known_posts[post.post_id] = post
    posts = user_state.posts
    if posts is not None and known is None:  # a known post is in the list already, if recent
        # New posts are nearly always the newest: the place is found at once.
        at = next((i for i, p in enumerate(posts) if p.key < post.key), len(posts))
        posts.insert(at, post)
    return mutations


def _post_deleted(state: BatchState, event: PostDeleted, settings: FoldSettings) -> list[Mutation]:
    data = event.data
    post = state.known_posts.get(data.post_id)
    if post is None:
        return []  # never created, or already deleted: nothing to do
    if post.author_id != data.author_id:
        raise Rejected(f"post {data.post_id!r} belongs to {post.author_id!r}, not {data.author_id!r}")
    user_state = state.users[post.author_id]
    mutations: list[Mutation] = []
    if settings.strategy != "pull":
        owners = [post.author_id, *_sorted_followers(user_state)]
        mutations.append(DeleteTimelineEntries(tuple((o, post.ts, post.post_id) for o in owners)))
    mutations.append(DeletePost(post.author_id, post.post_id, post.ts))
    del state.known_posts[post.post_id]
    if user_state.posts is not None:
        user_state.posts = [p for p in user_state.posts if p.post_id != post.post_id]
    return mutations


# By type, not a match statement: one dict lookup per event instead of a case tried in turn.
_FOLDS: dict[type, Callable[[BatchState, Any, FoldSettings], list[Mutation]]] = {
    UserRegistered: _registered,
    UserFollowed: _followed,
    UserUnfollowed: _unfollowed,
    PostCreated: _post_created,
    PostDeleted: _post_deleted,
}
