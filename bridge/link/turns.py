"""Turns at the gateway's store, handed out in the order they were asked for.

Every site's stream stores its envelopes through one gateway; without turns, the site that
sends most also stores most at a time, and a quiet site's envelope waits behind whatever the
busy one has in hand. Here a stream stores at most ``turn_envelopes`` at a time, a few streams
store at once (``slots``), and a stream that wants another turn queues behind every stream
already waiting: a site with one envelope waits at most for the turns of the sites ahead of
it, never for a busy site's whole backlog. A site alone uses every slot it can fill.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Turns:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be positive")
        self._free = slots
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for future in self._waiting if not future.done())

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        await self._take()
        try:
            yield
        finally:
            self._give_back()

    async def _take(self) -> None:
        while self._waiting and self._waiting[0].done():
            self._waiting.popleft()  # a waiter that was cancelled before its turn came
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._give_back()  # handed a slot just as it was cancelled: pass it on
            else:
                future.cancel()
            raise

    def _give_back(self) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)  # the slot goes straight to the next in line
                return
        self._free += 1
