"""The Lambda entry point, `fanline.aws_lambda.handler` (infra/terraform/lambda.tf's image command).

Settings come from the FANLINE_* environment, as in the ECS tasks. The pointer, the log and the
active version's store and runner are opened on the first invocation and kept for the warm
container's later ones; the event loop is kept with them, since aiobotocore's clients belong to
the loop that opened them.

Every invocation first reads the projection-version pointer (one strongly consistent GetItem):
when `fanline replay` has switched, the batch goes to the new version, folded with the settings
the pointer recorded for it (the environment's only when none are), and what the old version
got after the replay's position is first folded from the stream into the new one
(`processors.lambda_handler.GapFillingHandler`). Reading it every time, not once a second as the
services do, is what makes that exact: an invocation that read the old pointer is the shard's
last on the old version, since the mapping runs one invocation per shard at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

from fanline import versions, wiring
from fanline.settings import Settings
from processors.lambda_handler import GapFillingHandler, handle_event
from processors.metrics import Metrics
from processors.runner import Runner
from projections.versions import VersionPointer
from streams.log import Log

logging.getLogger().setLevel(logging.INFO)
logger = logging.getLogger(__name__)


class LambdaProcessor:
    """Callable as Lambda calls a handler: `(event, context) -> {"batchItemFailures": [...]}`."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stack = AsyncExitStack()
        self._settings: Settings | None = None
        self._pointer: VersionPointer | None = None
        self._log: Log | None = None
        self.version: str | None = None
        self.handler: GapFillingHandler | None = None

    async def _handler(self) -> GapFillingHandler:
        """The active version's handler, (re)opened when the pointer moved."""
        if self._settings is None or self._pointer is None or self._log is None:
            self._settings = Settings.load()
            self._pointer = await versions.open_pointer(self._settings)
            self._stack.push_async_callback(self._pointer.close)
            self._log = await wiring.open_log(self._settings)
            self._stack.push_async_callback(self._log.close)
        pointed = await self._pointer.get()
        if self.handler is None or pointed.active != self.version:
            fold = versions.version_fold(pointed, pointed.active, wiring.fold_settings(self._settings))
            store = await versions.open_store_version(self._settings, pointed.active)
            previous = self.handler
            self.handler = GapFillingHandler(Runner(store, fold, Metrics()), self._log)
            if previous is not None:
                logger.info("projection version %r replaces %r", pointed.active, self.version)
                await previous.runner.store.close()
            self.version = pointed.active
        return self.handler

    async def _invoke(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        return await handle_event(event, await self._handler())

    def __call__(self, event: Mapping[str, Any], context: object = None) -> dict[str, list[dict[str, str]]]:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._invoke(event))

    def close(self) -> None:
        """Close the store, the log, the pointer and the loop (tests; Lambda just freezes the container)."""
        if self._loop is None:
            return
        if self.handler is not None:
            self._loop.run_until_complete(self.handler.runner.store.close())
            self.handler = None
        self._loop.run_until_complete(self._stack.aclose())
        self._settings, self._pointer, self._log = None, None, None
        self._loop.close()
        self._loop = None


handler = LambdaProcessor()
