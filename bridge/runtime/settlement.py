"""Acks, naks and terms of pulled messages, gathered from callbacks and sent by one task.

A callback that settles a message (the cloud answered, a reply was forwarded) only queues it
here; one task sends what queued up, in order, with one wake of the connection for all of
them. A task per message cost each one a task's creation and scheduling, and at low rates
that was much of the work per message.
"""

from __future__ import annotations

import asyncio
import logging

from bridge.runtime.ports import Pulled

log = logging.getLogger("rbridge.settlement")


class Settlement:
    """Acks, naks and terms gathered from callbacks and sent by one task, in order."""

    def __init__(self) -> None:
        self._queue: list[tuple[str, Pulled, float | None]] = []
        self._ready = asyncio.Event()

    def ack(self, message: Pulled) -> None:
        self._queue.append(("ack", message, None))
        self._ready.set()

    def nak(self, message: Pulled, delay: float | None = None) -> None:
        self._queue.append(("nak", message, delay))
        self._ready.set()

    def term(self, message: Pulled) -> None:
        self._queue.append(("term", message, None))
        self._ready.set()

    def __len__(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self.flush()

    async def flush(self) -> None:
        batch, self._queue = self._queue, []
        for kind, message, delay in batch:
            try:
                if kind == "ack":
                    await message.ack()
                elif kind == "nak":
                    await message.nak(delay=delay)
                else:
                    await message.term()
            except (
                Exception
            ) as error:  # an already-settled message, or NATS gone: redelivery covers it
                log.debug("could not %s a message: %s", kind, type(error).__name__)
