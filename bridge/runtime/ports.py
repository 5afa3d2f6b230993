"""What the runtimes need of NATS, as protocols: the real clients satisfy them, and so do the
in-memory ones of :mod:`bridge.runtime.memory` (for fast tests and tools; one contract test runs
against both).

- :class:`Bus` -- core NATS publishing (a deny's notice, a reply or request delivered locally),
  one message or a batch, and a flush that returns once the server has it;
- :class:`Publisher` -- publishing to a JetStream stream, one answer per message;
- :class:`Pulled` -- a message pulled from a stream's consumer, settled with ack, nak or term.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class Bus(Protocol):
    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None: ...

    async def publish_many(self, messages: Sequence[tuple[str, bytes, dict[str, str]]]) -> None:
        """Publish every (subject, payload, headers) in order; bad input (a subject or header
        name NATS cannot carry) raises before any of them is sent."""
        ...

    async def flush(self, timeout: int = 10) -> None:
        """Return once the server has everything published so far (raise if it did not say so
        within ``timeout`` seconds)."""
        ...


class Publisher(Protocol):
    async def publish_many(
        self, items: Sequence[tuple[str, bytes, Mapping[str, str]]]
    ) -> list[str | None]:
        """One answer per (subject, payload, headers): None once stored (or already stored,
        the same ``Nats-Msg-Id`` within the stream's window), else why not; an answer starting
        with :data:`~bridge.runtime.publisher.PERMANENT_PREFIX` is refused for good."""
        ...


class Sequences(Protocol):
    @property
    def stream(self) -> int: ...


class Delivery(Protocol):
    @property
    def sequence(self) -> Sequences: ...
    @property
    def num_delivered(self) -> int: ...


class Pulled(Protocol):
    """A message from a consumer: gone once acked or termed; a nak delivers it again after
    ``delay`` seconds, with ``num_delivered`` one higher."""

    subject: str
    data: bytes
    headers: dict[str, str] | None

    @property
    def metadata(self) -> Delivery: ...
    async def ack(self) -> None: ...
    async def nak(self, delay: float | None = None) -> None: ...
    async def term(self) -> None: ...
