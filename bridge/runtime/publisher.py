"""Publishing to JetStream fast: many publishes in flight, PubAcks gathered on one inbox.

Awaiting ``js.publish`` one message at a time caps a Python process at ~17k messages/s; here a
batch is published back to back, each with its own reply subject under one wildcard inbox, and
the PubAcks are matched by that subject. A PubAck means JetStream stored the message (or had
it already: a duplicate inside the stream's window is acknowledged as such, and is fine).
Messages are framed by :mod:`bridge.natspublish` and handed over a batch at a time; the PubAcks
of a batch fill one list, with one future for the batch.

:class:`NatsBus` is the same framing for core NATS (the edge's deliveries to local agents).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from nats.aio.client import Client

from bridge import natsanswers, natspublish

PERMANENT_PREFIX = "JetStream error 400:"
"""How an answer starts when JetStream refused the message itself (a resend gets the same)."""


class NatsBus:
    """Core NATS publishing (:class:`~bridge.runtime.ports.Bus`) on a connection, a batch with
    the bridge's own frames and one wake of the flusher."""

    def __init__(self, connection: Client) -> None:
        self.connection = connection

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        await natspublish.publish_many(self.connection, [(subject, payload, headers, reply)])

    async def publish_many(self, messages: Sequence[tuple[str, bytes, dict[str, str]]]) -> None:
        await natspublish.publish_many(
            self.connection,
            [(subject, payload, headers, "") for subject, payload, headers in messages],
        )

    async def flush(self, timeout: int = 10) -> None:
        await natspublish.flush(self.connection, timeout)


class _Batch:
    """The answers of one :meth:`StreamPublisher.publish_many`, one slot per message; its
    future is done once every slot is filled (one future per batch, not per message). A slot
    not answered keeps ``unanswered``: such a message counts as not stored."""

    __slots__ = ("answers", "done", "missing")

    def __init__(self, size: int, done: asyncio.Future[None], unanswered: str) -> None:
        self.answers: list[str | None] = [unanswered] * size
        self.missing = size
        self.done = done

    def answer(self, slot: int, answer: str | None) -> None:
        self.answers[slot] = answer
        self.missing -= 1
        if not self.missing and not self.done.done():
            self.done.set_result(None)


class StreamPublisher:
    def __init__(self, connection: Client, *, timeout: float = 10.0) -> None:
        self.connection = connection
        self.timeout = timeout
        self._prefix = ""
        # The reply token of each message waiting for its PubAck -> its batch and slot.
        self._waiting: dict[str, tuple[_Batch, int]] = {}
        self._numbers = itertools.count(1)
        self._subscription: Any = None

    async def start(self) -> None:
        self._prefix = self.connection.new_inbox()
        self._subscription = await natsanswers.subscribe_answers(
            self.connection, f"{self._prefix}.*", self._on_ack
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            await natsanswers.unsubscribe_answers(self.connection, self._subscription)
            self._subscription = None
        waiting, self._waiting = self._waiting, {}
        for batch, slot in waiting.values():
            batch.answer(slot, "publisher stopped")

    def _on_ack(self, subject: str, data: bytes, status: str | None) -> None:
        waiting = self._waiting.pop(subject.rpartition(".")[2], None)
        if waiting is not None:
            waiting[0].answer(waiting[1], _verdict(data, status))

    async def publish_many(
        self, items: Sequence[tuple[str, bytes, Mapping[str, str]]]
    ) -> list[str | None]:
        """Publish every (subject, payload, headers); one answer each: None once stored, else why not."""
        if not items:
            return []
        late = f"no PubAck within {self.timeout:.0f} s"
        batch = _Batch(len(items), asyncio.get_running_loop().create_future(), late)
        tokens = [str(next(self._numbers)) for _ in items]
        messages: list[natspublish.Message] = [
            (subject, payload, headers, f"{self._prefix}.{token}")
            for (subject, payload, headers), token in zip(items, tokens, strict=True)
        ]
        for slot, token in enumerate(tokens):
            self._waiting[token] = (batch, slot)
        try:
            await natspublish.publish_many(self.connection, messages)
            await asyncio.wait_for(batch.done, self.timeout)
        except TimeoutError:
            pass  # what did not answer in time keeps its "no PubAck" answer
        finally:
            for token in tokens:
                self._waiting.pop(token, None)
        return batch.answers


def _verdict(data: bytes, status: str | None) -> str | None:
    """What a PubAck says: None when the message is stored, else why not."""
    if status == "503":
        return "no stream takes this subject (503 no responders)"
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "unreadable PubAck"
    error = answer.get("error") if isinstance(answer, dict) else None
    return (
        None
        if error is None
        else f"JetStream error {error.get('code')}: {error.get('description')}"
    )
