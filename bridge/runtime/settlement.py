"""Acks, naks and terms of pulled messages, gathered from callbacks and sent by one task.

A callback that settles a message (the cloud answered, a reply was forwarded) only queues it
here; one task sends what queued up, in order, with one wake of the connection for all of
them. A task per message cost each one a task's creation and scheduling, and at low rates
that was much of the work per message. Messages of a real consumer are settled with frames the
bridge builds (:func:`bridge.natsconsume.settle_many`), one batch per connection, rather than
one publish each through nats-py.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg

from bridge.natsconsume import settle_many
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
        # Messages of a real consumer: framed and sent together, per connection.
        wired: dict[int, tuple[Client, list[tuple[str, Msg, float | None]]]] = {}
        others: list[tuple[str, Pulled, float | None]] = []
        for kind, message, delay in batch:
            if isinstance(message, Msg) and isinstance(message._client, Client):
                client = message._client
                wired.setdefault(id(client), (client, []))[1].append((kind, message, delay))
            else:
                others.append((kind, message, delay))
        for client, settled in wired.values():
            try:
                await settle_many(client, settled)
            except Exception as error:  # NATS gone: redelivery covers it
                log.debug("could not settle %d messages: %s", len(settled), type(error).__name__)
        for kind, message, delay in others:
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
