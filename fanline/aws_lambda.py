"""The Lambda entry point, `fanline.aws_lambda.handler` (infra/terraform/lambda.tf's image command).

Settings come from the FANLINE_* environment, as in the ECS tasks. The store and the runner are
opened on the first invocation and kept for the warm container's later ones; the event loop is
kept with them, since aiobotocore's clients belong to the loop that opened them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from fanline import wiring
from fanline.settings import Settings
from processors.lambda_handler import handle_event
from processors.metrics import Metrics
from processors.runner import Runner

logging.getLogger().setLevel(logging.INFO)


class LambdaProcessor:
    """Callable as Lambda calls a handler: `(event, context) -> {"batchItemFailures": [...]}`."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Runner | None = None

    async def _open(self) -> Runner:
        settings = Settings.load()
        store = await wiring.open_store(settings)
        return Runner(store, wiring.fold_settings(settings), Metrics())

    def __call__(self, event: Mapping[str, Any], context: object = None) -> dict[str, list[dict[str, str]]]:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        if self._runner is None:
            self._runner = self._loop.run_until_complete(self._open())
        return self._loop.run_until_complete(handle_event(event, self._runner.handle))

    def close(self) -> None:
        """Close the store and the loop (tests; Lambda just freezes the container)."""
        if self._loop is None:
            return
        if self._runner is not None:
            self._loop.run_until_complete(self._runner.store.close())
            self._runner = None
        self._loop.close()
        self._loop = None


handler = LambdaProcessor()
