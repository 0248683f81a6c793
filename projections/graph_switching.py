"""SwitchingGraph: a GraphStore that follows the projection-version pointer, for the read API.

The graph's twin of `projections.switching.SwitchingStore`: each call looks at the pointer at
most once per `check_every_s` (one look at a time) and, when the active version changed, sends
every later call to that version's graph (`fanline replay` built it beside the live one). Calls
already running finish on the old graph; old graphs are closed with this one. A pointer that
cannot be read keeps the current graph (logged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from projections.graph import GraphMutation, GraphStore
from projections.versions import VersionPointer

logger = logging.getLogger(__name__)

# Opening a graph does not connect (the adapter connects on first use): no await needed.
GraphOpener = Callable[[str], GraphStore]


class SwitchingGraph:
    def __init__(self, pointer: VersionPointer, open_version: GraphOpener, version: str,
                 *, check_every_s: float = 1.0) -> None:
        self.pointer = pointer
        self.version = version
        self._open = open_version
        self._graph = open_version(version)
        self._graphs = [self._graph]
        self._check_every_s = check_every_s
        self._checked = time.monotonic()
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, pointer: VersionPointer, open_version: GraphOpener, *,
                   check_every_s: float = 1.0) -> SwitchingGraph:
        return cls(pointer, open_version, (await pointer.get()).active, check_every_s=check_every_s)

    async def current(self) -> GraphStore:
        if time.monotonic() - self._checked < self._check_every_s:
            return self._graph
        async with self._lock:
            if time.monotonic() - self._checked >= self._check_every_s:
                try:
                    active = (await self.pointer.get()).active
                    if active != self.version:
                        self._graph = self._open(active)
                        self._graphs.append(self._graph)
                        logger.info("graph: switched from version %r to %r", self.version, active)
                        self.version = active
                except Exception:
                    logger.exception("graph: the version pointer could not be read; staying on %r",
                                     self.version)
                self._checked = time.monotonic()
        return self._graph

    async def apply(self, mutations: Sequence[GraphMutation], shard_id: str, sequence: str) -> None:
        await (await self.current()).apply(mutations, shard_id, sequence)

    async def applied(self) -> dict[str, str]:
        return await (await self.current()).applied()

    async def following_ids(self, user_id: str) -> list[str]:
        return await (await self.current()).following_ids(user_id)

    async def follow_lists(self) -> dict[str, list[str]]:
        return await (await self.current()).follow_lists()

    async def handles(self, user_ids: Sequence[str]) -> dict[str, str]:
        return await (await self.current()).handles(user_ids)

    async def suggestions(self, user_id: str, limit: int) -> list[tuple[str, int]]:
        return await (await self.current()).suggestions(user_id, limit)

    async def mutuals(self, a: str, b: str) -> list[str]:
        return await (await self.current()).mutuals(a, b)

    async def close(self) -> None:
        graphs, self._graphs = self._graphs, []
        for graph in graphs:
            await graph.close()
        await self.pointer.close()
