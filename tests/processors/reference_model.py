"""The whole semantics in plain Python, written for clarity, independent of the folds.

What a reader sees after a history of events, whatever the strategy, as long as the history
stays within the limits the strategies share:
- no timeline ever holds more than `timeline_cap` posts (so trimming never shows), and
- no author ever has more than `backfill_depth` live posts (so a backfill on follow, and the
  push a demoted celebrity makes, carry all of the author's posts).

Within them a timeline is simply: the live posts of the people the user follows, and the
user's own, newest first by (ts, post_id).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from projections.records import Post, User
from projections.timeline import TimelineItem
from streams.events import Event, PostCreated, PostDeleted, UserFollowed, UserRegistered, UserUnfollowed


@dataclass
class ReferenceModel:
    celebrity_threshold: int
    profiles: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (handle, name)
    celebrities: set[str] = field(default_factory=set)
    follows: set[tuple[str, str]] = field(default_factory=set)  # (follower, followee)
    posts: dict[str, Post] = field(default_factory=dict)  # the live ones

    # --- events ----------------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        if isinstance(event, UserRegistered):
            self.profiles[event.data.user_id] = (event.data.handle, event.data.display_name)
            self._update_flag(event.data.user_id)
        elif isinstance(event, UserFollowed):
            if event.data.follower_id != event.data.followee_id:
                self.follows.add((event.data.follower_id, event.data.followee_id))
                self._update_flag(event.data.followee_id)
        elif isinstance(event, UserUnfollowed):
            self.follows.discard((event.data.follower_id, event.data.followee_id))
            self._update_flag(event.data.followee_id)
        elif isinstance(event, PostCreated):
            existing = self.posts.get(event.data.post_id)
            if existing is None:
                data = event.data
                self.posts[data.post_id] = Post(data.post_id, data.author_id, data.body, event.ts)
        elif isinstance(event, PostDeleted):
            existing = self.posts.get(event.data.post_id)
            if existing is not None and existing.author_id == event.data.author_id:
                del self.posts[event.data.post_id]

    def _update_flag(self, user_id: str) -> None:
        if user_id not in self.profiles:
            return  # only registered users carry a flag
        count = len(self.follower_ids(user_id))
        if count >= self.celebrity_threshold:
            self.celebrities.add(user_id)
        elif count < 0.9 * self.celebrity_threshold:
            self.celebrities.discard(user_id)

    # --- what the projections should hold ---------------------------------------------------
    def user(self, user_id: str) -> User | None:
        if user_id not in self.profiles:
            return None
        handle, name = self.profiles[user_id]
        followers = len(self.follower_ids(user_id))
        return User(user_id, handle, name, followers, user_id in self.celebrities)

    def follower_ids(self, user_id: str) -> list[str]:
        return sorted(f for f, a in self.follows if a == user_id)

    def following_ids(self, user_id: str) -> list[str]:
        return sorted(a for f, a in self.follows if f == user_id)

    def posts_of(self, author_id: str) -> list[TimelineItem]:
        return self._items(p for p in self.posts.values() if p.author_id == author_id)

    def timeline(self, user_id: str) -> list[TimelineItem]:
        authors = {*self.following_ids(user_id), user_id}
        return self._items(p for p in self.posts.values() if p.author_id in authors)

    def _items(self, posts: Iterable[Post]) -> list[TimelineItem]:
        items = []
        for post in sorted(posts, key=lambda p: p.key, reverse=True):
            handle = self.profiles.get(post.author_id, ("", ""))[0]
            items.append(TimelineItem(post.post_id, post.author_id, handle, post.body, post.ts))
        return items
