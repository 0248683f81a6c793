from __future__ import annotations

import pytest

from streams.events import (
    EventDecodeError,
    FollowData,
    PostCreated,
    PostCreatedData,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
    decode,
    encode,
    partition_key,
)


def test_round_trip_and_partition_keys() -> None:
    post = PostCreated(id="e1", ts=5, data=PostCreatedData(post_id="p1", author_id="a", body="hi"))
    follow = UserFollowed(id="e2", ts=6, data=FollowData(follower_id="f", followee_id="a"))
    user = UserRegistered(id="e3", ts=7, data=UserRegisteredData(user_id="u", handle="abc"))
    for event in (post, follow, user):
        assert decode(encode(event)) == event
    assert [partition_key(e) for e in (post, follow, user)] == ["a", "a", "u"]


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"type":"Nope","id":"x","ts":1,"data":{}}', "$.type"),
        (b'{"type":"PostDeleted","v":2,"id":"x","ts":1,"data":{"post_id":"p","author_id":"a"}}', "$.v"),
        (b'{"type":"PostDeleted","id":"x","ts":1,"data":{"post_id":"p"}}', "author_id"),
        (b'{"type":"PostDeleted","id":"x","ts":1,"data":{"post_id":"p","author_id":"a","x":1}}', "x"),
        (b'{"type":"PostCreated","id":"x","ts":1,"data":{"post_id":"p","author_id":"a","body":""}}', "body"),
        (b"\xff\xfe", "malformed"),
    ],
)
def test_bad_records_fail_loudly(raw: bytes, where: str) -> None:
    with pytest.raises(EventDecodeError, match=where.replace("$", r"\$")):
        decode(raw)
