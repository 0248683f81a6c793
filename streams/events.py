"""The events of fanline: their envelope, their schemas, one JSON codec and the partition-key rule.

Every write is one of these events. The schema library (msgspec) does all field checking: a
record with an unknown type, an unsupported version, a missing or mistyped field, or a field
nobody declared fails to decode with a message naming the place (`$.data.author_id`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# Ids are short opaque strings; the API mints them, producers may bring their own.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Body = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]

SCHEMA_VERSION = 1


# gc=False: events hold only strings, ints and other events, so they can never form a reference
# cycle; untracked, the hundreds of thousands a consumer decodes per second cost the cyclic GC
# nothing (a third of the consumer's CPU time otherwise, see fanline/benchmarks/consume.py).
class _Data(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    pass


class UserRegisteredData(_Data, frozen=True):
    user_id: Id
    handle: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{3,30}$")]
    display_name: Annotated[str, msgspec.Meta(max_length=100)] = ""


class FollowData(_Data, frozen=True):
    follower_id: Id
    followee_id: Id


class PostCreatedData(_Data, frozen=True):
    post_id: Id
    author_id: Id
    body: Body


class PostDeletedData(_Data, frozen=True):
    post_id: Id
    author_id: Id


class _Envelope(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type", gc=False
):
    """`type` (the tag), `v` (schema version), `id` (idempotency key), `ts` (ms since epoch)."""

    id: Id
    ts: int
    # Literal: a record of a version this code does not know fails to decode, loudly.
    v: Literal[1] = 1


class UserRegistered(_Envelope, frozen=True, tag="UserRegistered"):
    data: UserRegisteredData


class UserFollowed(_Envelope, frozen=True, tag="UserFollowed"):
    data: FollowData


class UserUnfollowed(_Envelope, frozen=True, tag="UserUnfollowed"):
    data: FollowData


class PostCreated(_Envelope, frozen=True, tag="PostCreated"):
    data: PostCreatedData


class PostDeleted(_Envelope, frozen=True, tag="PostDeleted"):
    data: PostDeletedData


Event = UserRegistered | UserFollowed | UserUnfollowed | PostCreated | PostDeleted
EVENT_TYPES: dict[str, type[Event]] = {
    "UserRegistered": UserRegistered,
    "UserFollowed": UserFollowed,
    "UserUnfollowed": UserUnfollowed,
    "PostCreated": PostCreated,
    "PostDeleted": PostDeleted,
}


class EventDecodeError(ValueError):
    """A record that is not a valid event of a known type and version."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(raw: bytes | str) -> Event:
    """Decode one event; the error says what is wrong and where (`... - at `$.data.body``)."""
    try:
        event: Event = _decoder.decode(raw)
        return event
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise EventDecodeError(str(exc)) from exc


def partition_key(event: Event) -> str:
    """The user whose followers or posts the event changes: all such events share a shard, in order."""
    match event:
        case UserRegistered():
            return event.data.user_id
        case UserFollowed() | UserUnfollowed():
            return event.data.followee_id
        case PostCreated() | PostDeleted():
            return event.data.author_id
