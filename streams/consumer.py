"""The shard consumer: the Kinesis Client Library's lease model on the Log and LeaseStore ports.

Every `lease_timeout_s / 3` a worker (`Consumer`) renews the leases it holds, makes sure every
shard has a lease, and takes leases: unowned ones, ones whose counter it has not seen move for
`lease_timeout_s` (their owner is dead), and, when it holds fewer than its fair share of the
live workers' leases, one lease stolen from the most loaded worker. Each held lease runs a
`ShardLoop`: read from the checkpoint, hand the handler a batch, checkpoint the batch's last
sequence once the handler returns. Checkpoints and renewals are conditional on the counter, so
a worker that lost a lease learns it at its next write and stops that shard at once. A worker
that cannot renew (the lease store errs or hangs) stops a shard once its last successful renewal
is `lease_timeout_s` old, as the KCL does: by then other workers may have taken the lease.

`on_lease_acquired(shard_id)` is called when the worker starts processing a shard (before its
first batch) and `on_lease_lost(shard_id)` when it stops because the lease was lost or ran out,
so a handler that caches per-shard progress (the Runner's applied marks) can drop it.

Delivery is at least once and in order per shard: a batch whose handler raises is handed over
again (with backoff) and never skipped; a batch handled but not yet checkpointed when a worker
dies is handled again by the next owner. A child shard (after a split or merge) is taken only
once every parent's checkpoint is SHARD_END, so a key's records keep their order across it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential, wait_random

from streams.delivery import Batch, Delivered, Handler, Undecodable
from streams.events import EventDecodeError, decode
from streams.leases import SHARD_END, TRIM_HORIZON, Lease, LeaseStore
from streams.log import Log, Position, ReadResult, Shard

logger = logging.getLogger(__name__)


# --- pure rules ---------------------------------------------------------------------------------
def position_after(checkpoint: str) -> Position:
    """Where a shard's reading resumes: its start, or just after the last record processed."""
    if checkpoint == TRIM_HORIZON:
        return Position.trim_horizon()
    if checkpoint == SHARD_END:
        raise ValueError("a shard checkpointed at SHARD_END has nothing left to read")
    return Position.after(checkpoint)


def to_batch(shard_id: str, result: ReadResult) -> Batch:
    """Decode each record; one that does not decode becomes an Undecodable item, in its place."""
    items: list[Delivered | Undecodable] = []
    for record in result.records:
        try:
            items.append(Delivered(shard_id, record.sequence, decode(record.data), record.arrival_ms))
        except EventDecodeError as exc:
            items.append(Undecodable(shard_id, record.sequence, record.data, str(exc)))
    return Batch(shard_id, items, result.millis_behind)


def parents_first(shards: Sequence[Shard]) -> list[Shard]:
    """Order shards so every parent comes before its children (leases are created in this order)."""
    known = {s.shard_id for s in shards}
    placed: set[str] = set()
    ordered: list[Shard] = []
    remaining = list(shards)
    while remaining:
        ready = [s for s in remaining if all(p in placed or p not in known for p in s.parent_ids)]
        ready = ready or remaining  # a cycle cannot happen in a log; never loop forever anyway
        ordered += ready
        placed |= {s.shard_id for s in ready}
        remaining = [s for s in remaining if s.shard_id not in placed]
    return ordered


def parents_done(lease: Lease, by_id: dict[str, Lease]) -> bool:
    """Every parent is read to its end, or has no lease any more (trimmed away)."""
    return all(p not in by_id or by_id[p].checkpoint == SHARD_END for p in lease.parent_ids)


def leases_to_take(
    leases: Sequence[Lease], me: str, held: Collection[str], expired: Collection[str]
) -> list[Lease]:
    """The KCL's taking rule: free leases up to our fair share, else steal one from the most loaded.

    `held`: the shards this worker is processing. `expired`: the shards whose counter has not
    moved for the lease timeout as observed here. A lease in our name that we do not process
    (we restarted) is free for us.
    """
    by_id = {lease.shard_id: lease for lease in leases}
    workable = [lease for lease in leases if lease.checkpoint != SHARD_END and parents_done(lease, by_id)]
    free = [
        lease
        for lease in workable
        if lease.shard_id not in held
        and (lease.owner is None or lease.owner == me or lease.shard_id in expired)
    ]
    others = Counter(
        lease.owner
        for lease in workable
        if lease.owner is not None and lease.owner != me and lease.shard_id not in expired
    )
    target = math.ceil(len(workable) / (len(others) + 1))
    need = target - len(held)
    if need <= 0:
        return []
    if free:
        return free[:need]
    if others:
        victim, count = others.most_common(1)[0]
        if count > target:
            return [next(lease for lease in workable if lease.owner == victim)]
    return []


# --- one shard -----------------------------------------------------------------------------------
class ShardLoop:
    """Reads one held shard from its checkpoint and hands its batches to the handler, in order."""

    def __init__(self, consumer: Consumer, lease: Lease) -> None:
        self.consumer = consumer
        self.lease = lease
        # Renewals and checkpoints both bump the counter: one at a time, each from the latest lease.
        self.lock = asyncio.Lock()
        # Set by stop() and when the lease is lost: hand over no new batch.
        self.halt = asyncio.Event()
        self.lost = False
        self.finished = False  # checkpointed at SHARD_END and released
        # When the lease was last taken, renewed or checkpointed here (monotonic): past this plus
        # the lease timeout, other workers may hold it, so this loop must not go on.
        self.renewed_at = time.monotonic()
        self.task: asyncio.Task[None] | None = None

    @property
    def shard_id(self) -> str:
        return self.lease.shard_id

    async def run(self) -> None:
        consumer = self.consumer
        reader = consumer.log.reader(self.shard_id, position_after(self.lease.checkpoint))
        while not self.halt.is_set():
            result = await reader.read(consumer.batch_size)
            if self.halt.is_set():
                return  # not handed over, not checkpointed: the next owner reads it again
            if self._ran_out():
                return
            if result.records:
                batch = to_batch(self.shard_id, result)
                if not await self._deliver(batch) or not await self.checkpoint(batch.last_sequence):
                    return
            if result.end_of_shard:
                await self._finish()
                return
            if not result.records:
                await self._idle()

    async def _deliver(self, batch: Batch) -> bool:
        """Hand the batch over until the handler returns; False if we gave up (stop, lease lost)."""

        def give_up(state: RetryCallState) -> bool:
            return self.halt.is_set() or self._ran_out()

        initial, most = self.consumer.retry_initial_s, self.consumer.retry_max_s
        retrying = AsyncRetrying(
            # Exponential backoff with jitter of the same size as the first wait.
            wait=wait_exponential(multiplier=initial, max=most) + wait_random(0, initial),
            retry=retry_if_exception_type(Exception),
            stop=give_up,
            sleep=self._sleep,
            before_sleep=lambda state: logger.warning(
                "handler failed on %s at %s (attempt %d), retrying: %r",
                self.shard_id, batch.last_sequence, state.attempt_number,
                state.outcome.exception() if state.outcome else None,
            ),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self.consumer.handler(batch)
        except Exception:
            logger.warning("giving up on %s at %s: stopping", self.shard_id, batch.last_sequence)
            return False
        return True

    async def checkpoint(self, checkpoint: str) -> bool:
        """Record progress; False (and stop this shard) when the lease turned out to be lost."""
        async with self.lock:
            lease = await self.consumer.leases.checkpoint(self.lease, checkpoint)
            if lease is None:
                self._lose("checkpoint failed")
                return False
            self.lease = lease
            self.renewed_at = time.monotonic()
            return True

    async def renew(self) -> None:
        async with self.lock:
            if self.lost or self.finished:
                return
            try:
                lease = await self.consumer.leases.renew(self.lease)
            except Exception:
                self._ran_out()
                raise
            if lease is None:
                self._lose("renewal refused")
            else:
                self.lease = lease
                self.renewed_at = time.monotonic()

    def _ran_out(self) -> bool:
        """Stop (as if lost) once the last successful renewal is a lease timeout old."""
        if not self.lost and time.monotonic() - self.renewed_at >= self.consumer.lease_timeout_s:
            self._lose(f"no renewal for {self.consumer.lease_timeout_s:g} s")
        return self.lost

    async def release(self) -> None:
        async with self.lock:
            if not self.lost:
                await self.consumer.leases.release(self.lease)

    def _lose(self, why: str) -> None:
        logger.info("lease on %s lost (%s): stopping that shard", self.shard_id, why)
        self.lost = True
        self.halt.set()
        self.consumer.on_lease_lost(self.shard_id)

    async def _finish(self) -> None:
        """End of a closed shard: checkpoint SHARD_END, give the lease up, let children be taken."""
        if await self.checkpoint(SHARD_END):
            self.finished = True
            await self.release()
            self.consumer.wake()

    async def _idle(self) -> None:
        """Wait for new records without polling, or until halted."""
        waiting = asyncio.ensure_future(self.consumer.log.wait_for_records(self.consumer.idle_wait_s))
        halted = asyncio.ensure_future(self.halt.wait())
        try:
            await asyncio.wait({waiting, halted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, halted):
                task.cancel()
            await asyncio.gather(waiting, halted, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        """A retry's backoff, cut short by halt."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.halt.wait(), seconds)


# --- the worker ----------------------------------------------------------------------------------
class Consumer:
    """One worker. `await run()` consumes until `stop()`; then it releases its leases and returns."""

    def __init__(
        self,
        log: Log,
        leases: LeaseStore,
        handler: Handler,
        *,
        worker_id: str,
        lease_timeout_s: float = 10.0,
        batch_size: int = 1000,
        idle_wait_s: float = 1.0,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        on_lease_acquired: Callable[[str], None] = lambda shard_id: None,
        on_lease_lost: Callable[[str], None] = lambda shard_id: None,
    ) -> None:
        if not worker_id:
            raise ValueError("worker_id must be a non-empty string")
        if lease_timeout_s <= 0 or batch_size < 1 or idle_wait_s <= 0:
            raise ValueError("lease_timeout_s and idle_wait_s must be positive, batch_size at least 1")
        self.log = log
        self.leases = leases
        self.handler = handler
        self.worker_id = worker_id
        self.lease_timeout_s = lease_timeout_s
        self.batch_size = batch_size
        self.idle_wait_s = idle_wait_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.on_lease_acquired = on_lease_acquired
        self.on_lease_lost = on_lease_lost
        self.loops: dict[str, ShardLoop] = {}
        # Per shard: the counter last seen and when (monotonic) it was first seen at that value.
        self._seen: dict[str, tuple[int, float]] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    def stop(self) -> None:
        """Finish the batches in hand, checkpoint them, release every lease, return from run()."""
        self._stopping.set()
        for loop in self.loops.values():
            loop.halt.set()
        self.wake()

    def wake(self) -> None:
        """Run the next round now (a shard ended: its children may be taken)."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    await self.round()
                except Exception:
                    # The lease store or the log refused: the shards in hand go on; try again later.
                    logger.exception("consumer %s: a round failed", self.worker_id)
                await self._pause(self.lease_timeout_s / 3)
        finally:
            await self._shutdown()

    async def round(self) -> None:
        """One turn of the KCL's coordinator: forget ended loops, renew, sync shards, take."""
        self._reap()
        await asyncio.gather(*(loop.renew() for loop in self.loops.values()))
        leases = await self._sync_leases()
        now = time.monotonic()
        expired = self._observe(leases, now)
        for lease in leases_to_take(leases, self.worker_id, set(self.loops), expired):
            if self._stopping.is_set():
                return
            taken = await self.leases.take(lease, self.worker_id)
            if taken is not None:
                logger.info("consumer %s took %s from %s", self.worker_id, lease.shard_id, lease.owner)
                self._start(taken)

    async def _sync_leases(self) -> list[Lease]:
        """Every shard of the log has a lease (parents' created first); answer them all."""
        leases = await self.leases.list()
        known = {lease.shard_id for lease in leases}
        missing = [shard for shard in parents_first(await self.log.shards()) if shard.shard_id not in known]
        if missing:
            await self.leases.ensure(missing)
            leases = await self.leases.list()
        return leases

    def _observe(self, leases: list[Lease], now: float) -> set[str]:
        """Note counter changes; answer the shards whose counter has stood still for the timeout."""
        expired: set[str] = set()
        for lease in leases:
            seen = self._seen.get(lease.shard_id)
            if seen is None or seen[0] != lease.counter:
                self._seen[lease.shard_id] = (lease.counter, now)
            elif now - seen[1] >= self.lease_timeout_s:
                expired.add(lease.shard_id)
        return expired

    def _start(self, lease: Lease) -> None:
        self.on_lease_acquired(lease.shard_id)  # before the loop's first batch
        loop = ShardLoop(self, lease)
        loop.task = asyncio.create_task(loop.run(), name=f"{self.worker_id}:{lease.shard_id}")
        self.loops[lease.shard_id] = loop

    def _reap(self) -> None:
        """Forget loops that ended (lease lost, shard finished, or an error we log)."""
        for shard_id, loop in list(self.loops.items()):
            if loop.task is not None and loop.task.done():
                del self.loops[shard_id]
                if not loop.task.cancelled() and (error := loop.task.exception()) is not None:
                    # The lease stays in our name: the next round takes it again and resumes.
                    logger.error("consumer %s: shard %s failed: %r", self.worker_id, shard_id, error)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _shutdown(self) -> None:
        """Let each loop finish its batch and checkpoint, then release what is still held."""
        self._stopping.set()
        loops = list(self.loops.values())
        for loop in loops:
            loop.halt.set()
        tasks: list[Any] = [loop.task for loop in loops if loop.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        for loop in loops:
            if not loop.finished:
                try:
                    await loop.release()
                except Exception:
                    logger.exception("consumer %s: releasing %s failed", self.worker_id, loop.shard_id)
        self.loops.clear()
