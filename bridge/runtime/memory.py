"""In-memory stand-ins for what the runtimes use of NATS (:mod:`bridge.runtime.ports`).

For tests that exercise the bridge's own logic without starting a server, and for tools that
run one in a process. They behave as the real ones do where the runtimes depend on it -- one
contract test runs the same cases against these and against a real nats-server -- and nowhere
else: :class:`MemoryStream` is one stream with one consumer, no ``ack_wait`` and no persistence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from bridge import natspublish
from bridge.contract import HEADER_MSG_ID
from bridge.policy.subjects import matches


class Published(NamedTuple):
    subject: str
    payload: bytes
    reply: str
    headers: dict[str, str]


class MemoryBus:
    """Core NATS publishing, kept: every publish in ``published``, in order."""

    def __init__(self) -> None:
        self.published: list[Published] = []
        self.flushes = 0
        self.fail_flush: Exception | None = None
        self.fail_publish: Exception | None = None  # a connection that refuses what is sent

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.published.append(Published(subject, payload, reply, dict(headers or {})))

    async def publish_many(self, messages: Sequence[tuple[str, bytes, dict[str, str]]]) -> None:
        if self.fail_publish is not None:
            raise self.fail_publish
        for subject, payload, headers in messages:
            natspublish.frame(subject, payload, headers=headers)  # refused as NATS would
        for subject, payload, headers in messages:
            await self.publish(subject, payload, headers=headers)

    async def flush(self, timeout: int = 10) -> None:  # noqa: ARG002 - nothing to wait for
        """Everything is kept at once; ``fail_flush`` stands for a server that did not answer."""
        self.flushes += 1
        if self.fail_flush is not None:
            raise self.fail_flush


@dataclass(frozen=True, slots=True)
class Sequences:
    consumer: int
    stream: int


@dataclass(frozen=True, slots=True)
class DeliveryInfo:
    sequence: Sequences
    num_delivered: int


@dataclass(eq=False)
class MemoryMessage:
    """A message pulled from a :class:`MemoryStream`."""

    stream: MemoryStream
    sequence: int
    subject: str
    data: bytes
    headers: dict[str, str] | None
    delivered: int
    consumer_sequence: int

    @property
    def metadata(self) -> DeliveryInfo:
        return DeliveryInfo(Sequences(self.consumer_sequence, self.sequence), self.delivered)

    async def ack(self) -> None:
        self.stream._settle(self.sequence)

    async def term(self) -> None:
        self.stream._settle(self.sequence)

    async def nak(self, delay: float | None = None) -> None:
        self.stream._put_back(self.sequence, delay or 0.0)


@dataclass
class _Stored:
    subject: str
    data: bytes
    headers: dict[str, str]
    delivered: int = 0


@dataclass
class MemoryStream:
    """A JetStream stream with one pull consumer, in memory.

    Bounds refuse rather than drop (discard new), as the bridge's streams do: past ``max_msgs``
    or ``max_bytes`` a publish is refused for now (retriable); a message over ``max_msg_size``
    is refused for good. A ``Nats-Msg-Id`` seen before is acknowledged and not stored again.
    """

    subjects: Sequence[str] = (">",)
    max_msgs: int = 0
    max_bytes: int = 0
    max_msg_size: int = 0
    stored: dict[int, _Stored] = field(default_factory=dict)
    _ready: list[int] = field(default_factory=list)
    _ids: set[str] = field(default_factory=set)
    _last: int = 0
    _delivered: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def messages(self) -> int:
        """Messages stored: not yet acked or termed."""
        return len(self.stored)

    @property
    def pending(self) -> int:
        """Stored messages waiting to be pulled (again)."""
        return len(self._ready)

    async def publish_many(
        self, items: Sequence[tuple[str, bytes, Mapping[str, str]]]
    ) -> list[str | None]:
        for subject, payload, headers in items:
            natspublish.frame(subject, payload, headers=headers)  # refused as NATS would
        return [self._store(subject, payload, headers) for subject, payload, headers in items]

    def _store(self, subject: str, payload: bytes, headers: Mapping[str, str]) -> str | None:
        if not any(matches(pattern, subject) for pattern in self.subjects):
            return "no stream takes this subject (503 no responders)"
        if self.max_msg_size and len(payload) > self.max_msg_size:
            return "JetStream error 400: message size exceeds maximum allowed"
        msg_id = headers.get(HEADER_MSG_ID)
        if msg_id is not None and msg_id in self._ids:
            return None
        if self.max_msgs and len(self.stored) >= self.max_msgs:
            return "JetStream error 503: maximum messages exceeded"
        size = sum(len(m.data) for m in self.stored.values())
        if self.max_bytes and size + len(payload) > self.max_bytes:
            return "JetStream error 503: maximum bytes exceeded"
        if msg_id is not None:
            self._ids.add(msg_id)
        self._last += 1
        self.stored[self._last] = _Stored(subject, payload, dict(headers))
        self._ready.append(self._last)
        self._arrived.set()
        return None

    async def pull(self, batch: int, timeout: float) -> list[MemoryMessage]:
        """Up to ``batch`` messages, waiting up to ``timeout`` seconds for the first."""
        if not self._ready:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                return []
        taken, self._ready = self._ready[:batch], self._ready[batch:]
        pulled = []
        for sequence in taken:
            stored = self.stored[sequence]
            stored.delivered += 1
            self._delivered += 1
            pulled.append(
                MemoryMessage(
                    self, sequence, stored.subject, stored.data, dict(stored.headers),
                    stored.delivered, self._delivered,
                )
            )  # fmt: skip
        return pulled

    def _settle(self, sequence: int) -> None:
        self.stored.pop(sequence, None)

    def _put_back(self, sequence: int, delay: float) -> None:
        def ready() -> None:
            if sequence in self.stored and sequence not in self._ready:
                self._ready.append(sequence)
                self._ready.sort()
                self._arrived.set()

        if delay > 0:
            asyncio.get_running_loop().call_later(delay, ready)
        else:
            ready()
