"""A shard consumer on leases of its own, run until `fanline process` stops it.

The archiver and the graph processor each read the whole stream beside the projection runner,
with their own checkpoints, so either can lag, fail or be rebuilt without holding the others back.
"""

from __future__ import annotations

from collections.abc import Callable

from streams.consumer import Consumer
from streams.delivery import Handler
from streams.leases import LeaseStore
from streams.log import Log

# Registers what to call when the process is asked to stop.
OnStop = Callable[[Callable[[], None]], None]


async def consume_on_own_leases(
    log: Log, leases: LeaseStore, handler: Handler, worker_id: str, on_stop: OnStop
) -> None:
    """Until stopped (batch finished, checkpointed, leases released); the leases are closed after."""
    try:
        consumer = Consumer(log, leases, handler, worker_id=worker_id)
        on_stop(consumer.stop)
        await consumer.run()
    finally:
        await leases.close()
