"""The Store contract: every adapter passes these tests.

`StoreContract` is not collected itself (its name does not start with Test); tests/projections/
test_stores.py subclasses it once per adapter with a `store` fixture giving a fresh, empty store.
"""

from __future__ import annotations

import pytest

from projections.records import (
    DeadLetter,
    DeleteFollow,
    DeletePost,
    DeleteTimelineEntries,
    FeedPost,
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
from projections.store import Store

ALICE = User("alice", "alice", "Alice", followers=2)
BOB = User("bob", "bob", "Bob", followers=0, celebrity=True)


def post(post_id: str, author_id: str, ts: int) -> Post:
    return Post(post_id, author_id, f"body of {post_id}", ts)


def entry(user_id: str, p: Post) -> TimelineEntry:
    return TimelineEntry(user_id, p.ts, p.post_id, p.author_id)


async def snapshot(store: Store) -> dict[str, object]:
    """Everything a test can observe about users u0..u2, alice, bob and their posts."""
    ids = ["alice", "bob", "carol", "u0", "u1", "u2"]
    return {
        "users": await store.users(ids),
        "followers": {i: await store.follower_ids(i) for i in ids},
        "following": {i: await store.following_ids(i) for i in ids},
        "counts": {i: await store.following_count(i) for i in ids},
        "posts": {i: await store.posts_page(i, 100, None) for i in ids},
        "timelines": {i: await store.timeline_page(i, 100, None) for i in ids},
        "applied": await store.applied(),
    }


class StoreContract:
    # --- apply and the applied mark --------------------------------------------------------
    async def test_empty_store(self, store: Store) -> None:
        assert await store.applied() == {}
        assert await store.users(["nobody"]) == {}
        assert await store.follower_ids("nobody") == set()
        assert await store.following_ids("nobody") == []
        assert await store.following_count("nobody") == 0
        assert await store.posts_page("nobody", 10, None) == []
        assert await store.timeline_page("nobody", 10, None) == []
        assert await store.posts_by_id(["nope"]) == {}
        assert await store.posts_of_authors(["nobody"], 10, None) == []
        assert await store.posts_of_authors([], 10, None) == []
        assert await store.dead_letters(10) == []

    async def test_apply_records_the_applied_mark_per_shard(self, store: Store) -> None:
        await store.apply([PutUser(ALICE)], "shard-0", "100")
        await store.apply([], "shard-1", "7")
        assert await store.applied() == {"shard-0": "100", "shard-1": "7"}
        # Compared as numbers, not strings: "1000" is after "999".
        await store.apply([], "shard-0", "999")
        await store.apply([], "shard-0", "1000")
        assert (await store.applied())["shard-0"] == "1000"

    async def test_a_stale_sequence_never_moves_the_mark_back(self, store: Store) -> None:
        await store.apply([PutUser(ALICE)], "shard-0", "500")
        await store.apply([PutUser(BOB)], "shard-0", "20")
        assert await store.applied() == {"shard-0": "500"}
        # Nor writes anything: a late writer's batch would undo later ones (tests/faults/test_leases.py).
        assert set(await store.users(["alice", "bob"])) == {"alice"}
        await store.apply([PutUser(BOB)], "shard-0", "500")  # at the mark: a redelivery, applied
        assert set(await store.users(["alice", "bob"])) == {"alice", "bob"}

    async def test_applying_twice_leaves_the_same_state(self, store: Store) -> None:
        p1, p2, p3 = post("p1", "alice", 10), post("p2", "alice", 20), post("p3", "bob", 15)
        batch: list[Mutation] = [
            PutUser(ALICE),
            PutUser(BOB),
            PutFollow("bob", "alice"),
            PutFollow("carol", "alice"),
            PutFollow("carol", "bob"),
            DeleteFollow("carol", "bob"),
            PutPost(p1),
            PutPost(p2),
            PutPost(p3),
            DeletePost("alice", "p1", 10),
            PutTimelineEntries((entry("bob", p1), entry("bob", p2), entry("carol", p2))),
            DeleteTimelineEntries((("bob", 10, "p1"),)),
            TrimTimelines(("carol",), 5),
        ]
        await store.apply(batch, "shard-0", "1")
        once = await snapshot(store)
        await store.apply(batch, "shard-0", "1")
        assert await snapshot(store) == once
        # Half of it, then all of it again, as a crash between the two would do.
        await store.apply(batch[:6], "shard-0", "1")
        await store.apply(batch, "shard-0", "1")
        assert await snapshot(store) == once
        assert once["followers"] == {
            "alice": {"bob", "carol"}, "bob": set(), "carol": set(), "u0": set(), "u1": set(),
            "u2": set(),
        }

    async def test_bad_input_is_refused_and_changes_nothing(self, store: Store) -> None:
        user = PutUser(ALICE)
        with pytest.raises(ValueError, match="ts -1"):
            await store.apply([user, PutPost(post("p", "alice", -1))], "s", "1")
        with pytest.raises(ValueError, match="not a decimal sequence"):
            await store.apply([user], "s", "12ab")
        with pytest.raises(ValueError, match="negative"):
            await store.apply([user, TrimTimelines(("alice",), -1)], "s", "1")
        # A bad ts in any timeline of a put, the smallest or the largest of the put.
        for bad in (-1, 10**17):
            entries = (TimelineEntry("a", 5, "p5", "x"), TimelineEntry("b", bad, "p0", "x"),
                       TimelineEntry("c", 6, "p6", "x"))
            with pytest.raises(ValueError, match=f"ts {bad}"):
                await store.apply([user, PutTimelineEntries(entries)], "s", "1")
        assert await store.users(["alice"]) == {}
        assert await store.timeline_page("a", 10, None) == []
        assert await store.applied() == {}

    # --- users and the follow graph --------------------------------------------------------
    async def test_users_are_put_whole_and_looked_up_together(self, store: Store) -> None:
        await store.apply([PutUser(ALICE), PutUser(BOB)], "s", "1")
        renamed = User("alice", "alice", "Alice A.", followers=3, celebrity=True)
        await store.apply([PutUser(renamed)], "s", "2")
        assert await store.users(["alice", "bob", "nobody"]) == {"alice": renamed, "bob": BOB}
        assert await store.users([]) == {}

    async def test_follow_and_unfollow(self, store: Store) -> None:
        await store.apply(
            [PutFollow("bob", "alice"), PutFollow("carol", "alice"), PutFollow("alice", "bob")],
            "s",
            "1",
        )
        assert await store.follower_ids("alice") == {"bob", "carol"}
        assert await store.following_ids("carol") == ["alice"]
        assert await store.following_count("alice") == 1
        await store.apply([DeleteFollow("bob", "alice"), DeleteFollow("zed", "alice")], "s", "2")
        assert await store.follower_ids("alice") == {"carol"}
        assert await store.following_ids("bob") == []
        assert await store.following_count("bob") == 0

    async def test_followers_and_following_pages_with_after_cursors(self, store: Store) -> None:
        followers = [f"u{i:02d}" for i in range(7)]
        await store.apply([PutFollow(f, "star") for f in reversed(followers)], "s", "1")
        await store.apply([PutFollow("fan", f"u{i:02d}") for i in range(7)], "s", "2")
        for page_of, user in ((store.followers_page, "star"), (store.following_page, "fan")):
            seen: list[str] = []
            after: str | None = None
            while page := await page_of(user, 3, after):
                assert len(page) <= 3
                seen += page
                after = page[-1]
            assert seen == followers
            assert await page_of(user, 10, "u03") == ["u04", "u05", "u06"]
            assert await page_of(user, 10, "u06") == []
        assert await store.following_ids("fan") == followers
        assert await store.following_count("fan") == 7

    async def test_following_count_counts_many_edges(self, store: Store) -> None:
        await store.apply([PutFollow("fan", f"u{i:03d}") for i in range(130)], "s", "1")
        assert await store.following_count("fan") == 130
        assert len(await store.following_ids("fan")) == 130

    # --- posts -----------------------------------------------------------------------------
    async def test_posts_page_newest_first_with_exclusive_before(self, store: Store) -> None:
        # Two posts share ts 20: the post_id breaks the tie.
        posts = [post("a", "alice", 10), post("b", "alice", 20), post("c", "alice", 20),
                 post("d", "alice", 30), post("x", "bob", 25)]
        await store.apply([PutPost(p) for p in posts], "s", "1")
        newest_first = [posts[3], posts[2], posts[1], posts[0]]
        assert await store.posts_page("alice", 10, None) == newest_first
        assert await store.posts_page("alice", 2, None) == newest_first[:2]
        assert await store.posts_page("alice", 2, (20, "c")) == [posts[1], posts[0]]
        assert await store.posts_page("alice", 10, (10, "a")) == []
        assert await store.recent_posts("alice", 3) == newest_first[:3]
        # Walking with the last key as the cursor visits every post once.
        seen: list[Post] = []
        page = await store.posts_page("alice", 1, None)
        while page:
            seen += page
            page = await store.posts_page("alice", 1, page[-1].key)
        assert seen == newest_first

    async def test_posts_of_authors_merges_newest_first(self, store: Store) -> None:
        posts = [post(f"p{i:02d}", f"u{i % 3}", 100 + i // 2) for i in range(12)]
        await store.apply([PutPost(p) for p in posts], "s", "1")
        ordered = sorted(posts, key=lambda p: p.key, reverse=True)
        assert await store.posts_of_authors(["u0", "u1", "u2"], 100, None) == ordered
        assert await store.posts_of_authors(["u0", "u2"], 5, None) == [
            p for p in ordered if p.author_id != "u1"
        ][:5]
        cursor = ordered[4].key
        assert await store.posts_of_authors(["u0", "u1", "u2", "nobody"], 3, cursor) == ordered[5:8]

    async def test_posts_by_id(self, store: Store) -> None:
        posts = [post(f"p{i}", "alice", i) for i in range(5)]
        await store.apply([PutPost(p) for p in posts], "s", "1")
        assert await store.posts_by_id(["p1", "p3", "missing"]) == {"p1": posts[1], "p3": posts[3]}
        assert await store.posts_by_id([]) == {}

    async def test_posts_by_id_with_many_keys(self, store: Store) -> None:
        posts = [post(f"p{i:03d}", f"u{i % 7}", i) for i in range(230)]
        await store.apply([PutPost(p) for p in posts], "s", "1")
        found = await store.posts_by_id([p.post_id for p in posts])
        assert found == {p.post_id: p for p in posts}

    async def test_delete_post_removes_it_from_pages_and_lookups(self, store: Store) -> None:
        p1, p2 = post("p1", "alice", 10), post("p2", "alice", 20)
        await store.apply([PutPost(p1), PutPost(p2)], "s", "1")
        await store.apply([DeletePost("alice", "p2", 20)], "s", "2")
        assert await store.posts_page("alice", 10, None) == [p1]
        assert await store.posts_by_id(["p1", "p2"]) == {"p1": p1}
        assert await store.posts_of_authors(["alice"], 10, None) == [p1]
        assert await store.recent_posts("alice", 10) == [p1]
        # Deleting what is not there is not an error (at-least-once redelivery).
        await store.apply([DeletePost("alice", "p2", 20)], "s", "3")

    # --- timelines -------------------------------------------------------------------------
    async def test_timeline_page_newest_first_with_exclusive_before(self, store: Store) -> None:
        posts = [post("a", "x", 5), post("b", "y", 7), post("c", "x", 7), post("d", "y", 9)]
        await store.apply(
            [PutTimelineEntries(tuple(entry("reader", p) for p in posts)),
             PutTimelineEntries((entry("other", posts[0]),))],
            "s",
            "1",
        )
        expected = [entry("reader", p) for p in reversed(posts)]
        assert await store.timeline_page("reader", 10, None) == expected
        assert await store.timeline_page("reader", 2, (9, "d")) == expected[1:3]
        assert await store.timeline_page("reader", 10, (7, "c")) == expected[2:]
        assert await store.timeline_page("other", 10, None) == [entry("other", posts[0])]

    async def test_delete_timeline_entries(self, store: Store) -> None:
        posts = [post(f"p{i}", "x", i) for i in range(4)]
        await store.apply([PutTimelineEntries(tuple(entry("r", p) for p in posts))], "s", "1")
        await store.apply(
            [DeleteTimelineEntries((("r", 1, "p1"), ("r", 3, "p3"), ("nobody", 1, "p1")))], "s", "2"
        )
        assert await store.timeline_page("r", 10, None) == [entry("r", posts[2]), entry("r", posts[0])]

    async def test_trim_timelines_keeps_the_newest_cap(self, store: Store) -> None:
        posts = [post(f"p{i:02d}", "x", 1000 + i) for i in range(30)]
        await store.apply(
            [PutTimelineEntries(tuple(entry(u, p) for p in posts for u in ("r1", "r2", "r3")))],
            "s",
            "1",
        )
        await store.apply([TrimTimelines(("r1", "r2", "nobody"), 4)], "s", "2")
        newest = [p for p in reversed(posts)]
        assert await store.timeline_page("r1", 100, None) == [entry("r1", p) for p in newest[:4]]
        assert await store.timeline_page("r2", 100, None) == [entry("r2", p) for p in newest[:4]]
        assert len(await store.timeline_page("r3", 100, None)) == 30
        # Trimming a timeline already under its cap changes nothing.
        await store.apply([TrimTimelines(("r1",), 10)], "s", "3")
        assert len(await store.timeline_page("r1", 100, None)) == 4

    async def test_trim_keeps_the_newest_cap_of_entries_put_out_of_order(self, store: Store) -> None:
        posts = [post(f"p{i:02d}", "x", 1000 + i) for i in range(30)]
        await store.apply([PutTimelineEntries(tuple(entry("r", p) for p in posts[10:20]))], "s", "1")
        # Older and newer than what is held, interleaved and newest first, one put twice.
        later = [p for pair in zip(posts[29:19:-1], posts[9::-1], strict=True) for p in pair] + [posts[15]]
        deleted = (("r", posts[25].ts, posts[25].post_id), ("r", posts[12].ts, posts[12].post_id))
        await store.apply(
            [PutTimelineEntries(tuple(entry("r", p) for p in later)), DeleteTimelineEntries(deleted),
             TrimTimelines(("r",), 8)], "s", "2",
        )
        newest = [p for p in reversed(posts) if p.post_id not in ("p25", "p12")][:8]
        assert await store.timeline_page("r", 100, None) == [entry("r", p) for p in newest]
        # An entry older than all kept is put, then trimmed away again; a smaller cap cuts further.
        await store.apply([PutTimelineEntries((entry("r", posts[5]),)), TrimTimelines(("r",), 8)], "s", "3")
        assert await store.timeline_page("r", 100, None) == [entry("r", p) for p in newest]
        await store.apply([TrimTimelines(("r",), 3)], "s", "4")
        assert await store.timeline_page("r", 100, None) == [entry("r", p) for p in newest[:3]]

    async def test_mutations_apply_in_order_within_a_batch(self, store: Store) -> None:
        p = post("p", "alice", 1)
        await store.apply(
            [PutFollow("bob", "alice"), DeleteFollow("bob", "alice"), PutPost(p),
             DeletePost("alice", "p", 1), PutTimelineEntries((entry("bob", p),)),
             DeleteTimelineEntries((("bob", 1, "p"),)), PutFollow("carol", "alice")],
            "s",
            "1",
        )
        assert await store.follower_ids("alice") == {"carol"}
        assert await store.posts_by_id(["p"]) == {}
        assert await store.timeline_page("bob", 10, None) == []

    # --- page reads (a timeline page in few calls) -------------------------------------------
    async def test_celebrity_followees_are_the_followees_flagged_celebrity(self, store: Store) -> None:
        star = User("star", "star", "Star", followers=9, celebrity=True)
        await store.apply(
            [PutUser(ALICE), PutUser(BOB), PutUser(star), PutFollow("fan", "star"),
             PutFollow("fan", "alice"), PutFollow("fan", "bob"), PutFollow("fan", "ghost"),
             PutFollow("other", "alice")],
            "s", "1",
        )
        # ghost never registered: no record, so not a celebrity.
        assert await store.celebrity_followees("fan") == ["bob", "star"]
        assert await store.celebrity_followees("other") == []
        assert await store.celebrity_followees("nobody") == []

    async def test_timeline_feed_hydrates_and_skips_entries_of_deleted_posts(self, store: Store) -> None:
        posts = [post(f"p{i}", "alice" if i % 2 else "ghost", 10 + i) for i in range(8)]
        await store.apply(
            [PutUser(ALICE), *(PutPost(p) for p in posts),
             PutTimelineEntries(tuple(entry("r", p) for p in posts))],
            "s", "1",
        )
        # p7, p6, p5 (the newest three) and p2 are deleted: their entries stay behind.
        await store.apply([DeletePost(p.author_id, p.post_id, p.ts) for p in posts[5:] + posts[2:3]],
                          "s", "2")

        def fed(*ids: int) -> list[FeedPost]:
            return [FeedPost(f"p{i}", posts[i].author_id, "alice" if i % 2 else "", f"body of p{i}",
                             10 + i) for i in ids]

        assert await store.timeline_feed("r", 2, None) == fed(4, 3)  # fills past the stale three
        assert await store.timeline_feed("r", 10, None) == fed(4, 3, 1, 0)
        assert await store.timeline_feed("r", 2, (13, "p3")) == fed(1, 0)
        assert await store.timeline_feed("r", 0, None) == []
        assert await store.timeline_feed("nobody", 5, None) == []

    async def test_authors_feed_is_posts_of_authors_with_handles(self, store: Store) -> None:
        posts = [post(f"p{i:02d}", ("alice", "bob", "ghost")[i % 3], 100 + i // 2) for i in range(12)]
        await store.apply([PutUser(ALICE), PutUser(BOB), *(PutPost(p) for p in posts)], "s", "1")
        handles = {"alice": "alice", "bob": "bob", "ghost": ""}
        for authors, limit, before in ((["alice", "bob", "ghost"], 100, None), (["alice", "ghost"], 3, None),
                                       (["bob", "ghost", "nobody"], 2, posts[7].key), (["alice"], 0, None),
                                       ([], 5, None)):
            expected = [FeedPost(p.post_id, p.author_id, handles[p.author_id], p.body, p.ts)
                        for p in await store.posts_of_authors(authors, limit, before)]
            assert await store.authors_feed(authors, limit, before) == expected
            assert len(expected) == min(limit, sum(1 for p in posts if p.author_id in authors
                                                   and (before is None or p.key < before)))

    async def test_hybrid_feed_merges_pushed_and_celebrity_posts(self, store: Store) -> None:
        star = User("star", "star", "Star", followers=9, celebrity=True)
        old_star = post("s0", "star", 5)  # pushed before star crossed the line, and pulled now
        star_posts = [old_star, *(post(f"s{i}", "star", 10 * i + 1) for i in range(1, 6))]
        pushed = [post(f"a{i}", "alice", 10 * i) for i in range(6)]
        gone = post("gone", "alice", 100)  # its entry stays behind after the delete
        unpushed = post("b0", "bob", 33)  # bob is a celebrity r does not follow
        await store.apply(
            [PutUser(ALICE), PutUser(BOB), PutUser(star), PutFollow("r", "star"), PutFollow("r", "alice"),
             *(PutPost(p) for p in [*star_posts, *pushed, gone, unpushed]),
             PutTimelineEntries(tuple(entry("r", p) for p in [old_star, *pushed, gone]))],
            "s", "1",
        )
        await store.apply([DeletePost("alice", "gone", 100)], "s", "2")
        everything = sorted([*star_posts, *pushed], key=lambda p: p.key, reverse=True)
        handles = {"alice": "alice", "star": "star"}

        def fed(posts: list[Post]) -> list[FeedPost]:
            return [FeedPost(p.post_id, p.author_id, handles[p.author_id], p.body, p.ts) for p in posts]

        assert await store.hybrid_feed("r", 100, None) == fed(everything)
        assert await store.hybrid_feed("r", 4, None) == fed(everything[:4])
        assert await store.hybrid_feed("r", 3, everything[4].key) == fed(everything[5:8])
        assert await store.hybrid_feed("r", 0, None) == []
        assert await store.hybrid_feed("nobody", 10, None) == []
        # Walking with the last key as the cursor visits every post once.
        seen: list[FeedPost] = []
        page = await store.hybrid_feed("r", 2, None)
        while page:
            seen += page
            page = await store.hybrid_feed("r", 2, page[-1].key)
        assert seen == fed(everything)

    # --- dead letters ----------------------------------------------------------------------
    async def test_dead_letters_put_list_delete(self, store: Store) -> None:
        letters = [
            DeadLetter("shard-1", "30", "boom", b"\x00payload\xff", 3, 1_700_000_000_000),
            DeadLetter("shard-0", "200", "bad", b"{}", 5, 1_700_000_000_001),
            DeadLetter("shard-0", "1000", "worse", b"", 1, 1_700_000_000_002),
        ]
        for letter in letters:
            await store.put_dead_letter(letter)
        await store.put_dead_letter(letters[0])  # again: still one letter
        listed = await store.dead_letters(10)
        assert sorted(listed, key=lambda d: (d.shard_id, int(d.sequence))) == [
            letters[1], letters[2], letters[0]
        ]
        assert len(await store.dead_letters(2)) == 2
        await store.delete_dead_letter("shard-0", "200")
        await store.delete_dead_letter("shard-9", "1")  # absent: not an error
        assert sorted(await store.dead_letters(10), key=lambda d: d.shard_id) == [
            letters[2], letters[0]
        ]

    # --- lifecycle -------------------------------------------------------------------------
    async def test_ping(self, store: Store) -> None:
        await store.ping()
