"""Batches read from a link stream, handled in their own task, at both ends of the link.

Taking a batch means waiting on NATS (the gateway stores it in ``RB_IN``; the edge records the
spent reply tokens): done inside the stream's read loop, that wait held back every frame behind
the batch, the acks of the other direction included, so under load each direction's acks queued
behind the other's stores and the round trip grew without bound. Here the read loop only hands
batches over and goes on reading; one task takes them in order, and batches that queued up
meanwhile are taken together (one wait on NATS for all of them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

MERGE_LIMIT = 1024


class InboundBatches:
    def __init__(
        self, handle: Callable[[list[Any]], Awaitable[None]], *, merge_limit: int = MERGE_LIMIT
    ) -> None:
        self._handle = handle
        self._merge_limit = merge_limit
        self._queue: asyncio.Queue[Sequence[Any]] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="inbound-batches")

    def put(self, batch: Sequence[Any]) -> None:
        """Queue a batch; raises the handler's failure, if it failed, in the reader."""
        if self._task.done():
            self._task.result()
        self._queue.put_nowait(batch)

    async def drain(self) -> None:
        """Wait until every queued batch was handled (or the handler failed: raised here)."""
        joined = asyncio.ensure_future(self._queue.join())
        try:
            await asyncio.wait([joined, self._task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
        if self._task.done():
            self._task.result()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        queue = self._queue
        while True:
            merged = list(await queue.get())
            taken = 1
            while not queue.empty() and len(merged) < self._merge_limit:
                merged.extend(queue.get_nowait())
                taken += 1
            try:
                await self._handle(merged)
            finally:
                for _ in range(taken):
                    queue.task_done()
