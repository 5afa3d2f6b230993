"""Publishing to JetStream fast: many publishes in flight, PubAcks gathered on one inbox.

Awaiting ``js.publish`` one message at a time caps a Python process at ~17k messages/s; here a
batch is published back to back, each with its own reply subject under one wildcard inbox, and
the PubAcks are matched by that subject. A PubAck means JetStream stored the message (or had
it already: a duplicate inside the stream's window is acknowledged as such, and is fine).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from bridge import natspublish

PERMANENT_PREFIX = "JetStream error 400:"
"""How an answer starts when JetStream refused the message itself (a resend gets the same)."""


class StreamPublisher:
    def __init__(self, connection: Client, *, timeout: float = 10.0) -> None:
        self.connection = connection
        self.timeout = timeout
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future[str | None]] = {}
        self._numbers = itertools.count(1)
        self._subscription: Any = None

    async def start(self) -> None:
        self._prefix = self.connection.new_inbox()
        self._subscription = await self.connection.subscribe(f"{self._prefix}.*", cb=self._on_ack)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        for future in self._waiting.values():
            if not future.done():
                future.set_result("publisher stopped")
        self._waiting.clear()

    async def _on_ack(self, message: Msg) -> None:
        future = self._waiting.pop(message.subject.rpartition(".")[2], None)
        if future is None or future.done():
            return
        status = (message.headers or {}).get("Status")
        if status == "503":
            future.set_result("no stream takes this subject (503 no responders)")
            return
        try:
            answer = orjson.loads(message.data)
        except orjson.JSONDecodeError:
            future.set_result("unreadable PubAck")
            return
        error = answer.get("error") if isinstance(answer, dict) else None
        future.set_result(
            None
            if error is None
            else f"JetStream error {error.get('code')}: {error.get('description')}"
        )

    async def publish_many(
        self, items: Sequence[tuple[str, bytes, Mapping[str, str]]]
    ) -> list[str | None]:
        """Publish every (subject, payload, headers); one answer each: None once stored, else why not."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[str | None]] = []
        messages: list[natspublish.Message] = []
        for subject, payload, headers in items:
            token = str(next(self._numbers))
            future: asyncio.Future[str | None] = loop.create_future()
            self._waiting[token] = future
            futures.append(future)
            messages.append((subject, payload, headers, f"{self._prefix}.{token}"))
        try:
            await natspublish.publish_many(self.connection, messages)
        except BaseException:
            for future in futures:
                future.cancel()
            self._forget_cancelled()
            raise
        if futures:
            await asyncio.wait(futures, timeout=self.timeout)
        results: list[str | None] = []
        for future in futures:
            if future.done():
                results.append(future.result())
            else:
                future.cancel()
                results.append(f"no PubAck within {self.timeout:.0f} s")
        self._forget_cancelled()
        return results

    def _forget_cancelled(self) -> None:
        for token in [t for t, f in self._waiting.items() if f.cancelled()]:
            del self._waiting[token]
