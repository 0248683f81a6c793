"""The runner: a shard consumer's Handler that folds each batch into the Store.

    runner = Runner(store, FoldSettings(strategy="hybrid"), Metrics(prometheus_client.REGISTRY))
    consumer = ShardConsumer(..., handler=runner.handle)

Per batch: skip the items at or below the store's applied mark for the shard (a redelivery
after a crash between apply and checkpoint), dead-letter undecodable records, fold the rest in
order, and make all their mutations durable with one `store.apply(..., last_sequence)`. The
applied mark is cached per shard; call `forget(shard_id)` whenever the shard is taken (and when
its lease is lost), so progress another worker made meanwhile is read again from the store:
`Consumer(..., on_lease_acquired=runner.forget, on_lease_lost=runner.forget)`.

A fold that raises is retried (up to `fold_attempts`); then the event is dead-lettered and the
shard moves on. A `Rejected` event (bad input) is dead-lettered at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from operator import attrgetter

from processors.fold import Rejected, fold_event
from processors.metrics import Metrics
from processors.settings import FoldSettings
from processors.state import BatchState, load_state
from projections.records import (
    DeadLetter,
    DeleteTimelineEntries,
    Mutation,
    PutTimelineEntries,
    PutUser,
    TimelineEntry,
    TrimTimelines,
)
from projections.store import Store
from streams.delivery import Batch, Delivered, Undecodable
from streams.events import Event, encode

Fold = Callable[[BatchState, Event, FoldSettings], list[Mutation]]


def _seq(sequence: str) -> int:
    return int(sequence)  # decimal strings: compare as numbers


_OWNER = attrgetter("user_id")


def coalesce(mutations: list[Mutation], cap: int) -> list[Mutation]:
    """The batch's mutations with the same effect, cheaper to write.

    - One trim per timeline per batch, at the end: trimming after each post would cost a
      statement per follower per post.
    - Each run of timeline puts not separated by a timeline delete becomes one put, grouped by
      timeline (a stable sort on the owner alone: cheap, and the fold already emits each
      post's owners in order), where the run began: a store writes rows in key order several
      times faster than scattered (SQLite B-tree pages). Moving a put earlier is safe: no
      fold reads timelines, so a crash after it changes nothing a redelivery would decide.
    - User records last, after the trim. They carry the decisions a redelivery reads back
      (a celebrity's demotion, whose pushes must not be lost), and a store that applies a
      batch in parallel finishes every write before a trim first (DynamoDBStore: a trim must
      read, so it closes the run of writes before it). Moving them later is always safe.
    - Only the last record of each user: each put replaces the whole record, so the earlier
      ones of the batch change nothing the last does not overwrite (a world's batch of follows
      puts its followee's count once per follow, thousands of times).
    """
    out: list[Mutation] = []
    users: dict[str, Mutation] = {}
    trimmed: set[str] = set()
    run: list[TimelineEntry] = []
    run_at = -1

    def close_run() -> None:
        nonlocal run, run_at
        if run_at >= 0:
            out[run_at] = PutTimelineEntries(tuple(sorted(run, key=_OWNER)))
        run, run_at = [], -1

    for mutation in mutations:
        kind = type(mutation)  # compared by identity: cheaper than isinstance, per mutation
        if kind is PutUser:
            user_id = mutation.user.user_id  # type: ignore[union-attr]
            users.pop(user_id, None)  # re-inserted: the users keep the order of their last puts
            users[user_id] = mutation
        elif kind is TrimTimelines:
            trimmed.update(mutation.user_ids)  # type: ignore[union-attr]
        elif kind is PutTimelineEntries:
            if run_at < 0:
                run_at = len(out)
                out.append(mutation)  # a placeholder until the run closes
            run.extend(mutation.entries)  # type: ignore[union-attr]
        else:
            if kind is DeleteTimelineEntries:
                close_run()
            out.append(mutation)
    close_run()
    if trimmed:
        out.append(TrimTimelines(tuple(sorted(trimmed)), cap))
    return out + list(users.values())


class Runner:
    def __init__(
        self,
        store: Store,
        settings: FoldSettings | None = None,
        metrics: Metrics | None = None,
        *,
        fold_attempts: int = 3,
        fold: Fold = fold_event,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        if fold_attempts < 1:
            raise ValueError(f"fold_attempts must be at least 1, got {fold_attempts}")
        self.store = store
        self.settings = settings or FoldSettings()
        self.metrics = metrics or Metrics()
        self._fold_attempts = fold_attempts
        self._fold = fold
        self._clock_ms = clock_ms
        self._marks: dict[str, int] | None = None

    def forget(self, shard_id: str) -> None:
        """Drop the cached applied mark of a shard (its lease moved to another worker)."""
        if self._marks is not None:
            self._marks.pop(shard_id, None)

    async def _mark(self, shard_id: str) -> int | None:
        if self._marks is None or shard_id not in self._marks:
            applied = await self.store.applied()
            self._marks = {shard: _seq(seq) for shard, seq in applied.items()}
        return self._marks.get(shard_id)

    async def handle(self, batch: Batch) -> None:
        shard = batch.shard_id
        self.metrics.millis_behind.labels(shard).set(batch.millis_behind)
        if not batch.items:
            return
        mark = await self._mark(shard)
        fresh = batch.items
        # Items come in sequence order: when the first is past the mark, all are.
        if mark is not None and _seq(fresh[0].sequence) <= mark:
            fresh = [i for i in fresh if _seq(i.sequence) > mark]
            if not fresh:
                return
        events = [i.event for i in fresh if isinstance(i, Delivered)]
        state = await load_state(self.store, events, self.settings)
        folded_all: list[Mutation] = []
        # Per event type: how many were folded and their mutations, counted once per batch.
        counts: dict[type, int] = {}
        writes: dict[type, list[Mutation]] = {}
        fold, settings = self._fold, self.settings
        for item in fresh:
            if isinstance(item, Undecodable):
                await self._dead_letter(item.shard_id, item.sequence, item.error, item.data, 1, "undecodable")
                continue
            try:  # the first attempt inline, not in a coroutine per event: nearly all succeed
                folded = fold(state, item.event, settings)
            except Exception as exc:
                retried = await self._fold_again(state, item, exc)
                if retried is None:
                    continue
                folded = retried
            folded_all += folded
            event_type = type(item.event)
            counts[event_type] = counts.get(event_type, 0) + 1
            writes.setdefault(event_type, []).extend(folded)
        mutations = coalesce(folded_all, self.settings.timeline_cap)
        await self.store.apply(mutations, shard, batch.last_sequence)
        if self._marks is not None:
            self._marks[shard] = _seq(batch.last_sequence)
        strategy = self.settings.strategy
        for event_type, count in counts.items():
            self.metrics.count_writes(event_type.__name__, strategy, writes[event_type])
            self.metrics.count_events(event_type.__name__, count)
        for mutation in mutations:
            if isinstance(mutation, TrimTimelines):
                self.metrics.timeline_trims.labels(strategy).inc(len(mutation.user_ids))
        # The coalesced mutations first, so that the entries are freed in the order the fold
        # made them (with its own mutations), not in coalesce's order by owner, which jumps all
        # over memory: a push batch frees hundreds of thousands.
        del mutations

    async def _fold_again(self, state: BatchState, item: Delivered, exc: Exception) -> list[Mutation] | None:
        """After a first attempt that raised `exc`: the retries, and the dead letter if they fail
        too (None then). A Rejected event is not retried."""
        attempts = 1
        while not isinstance(exc, Rejected) and attempts < self._fold_attempts:
            attempts += 1
            try:
                return self._fold(state, item.event, self.settings)
            except Exception as again:  # a fold bug must not stop the shard: it is dead-lettered
                exc = again
        if isinstance(exc, Rejected):
            error, reason = f"rejected: {exc}", "rejected"
        else:
            error, reason = f"{type(exc).__name__}: {exc}", "fold_failed"
        await self._dead_letter(item.shard_id, item.sequence, error, encode(item.event), attempts, reason)
        return None

    async def _dead_letter(
        self, shard: str, sequence: str, error: str, payload: bytes, attempts: int, reason: str
    ) -> None:
        letter = DeadLetter(shard, sequence, error, payload, attempts, self._clock_ms())
        await self.store.put_dead_letter(letter)
        self.metrics.dead_letters.labels(shard, reason).inc()
