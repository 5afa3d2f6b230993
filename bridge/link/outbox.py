"""Envelopes on their way over the link, until the other side has answered for each of them.

Both ends use one: the edge for outbound envelopes, the gateway for replies to a site. It bounds
the envelopes not yet answered by a window (``put`` waits when it is full: that wait is the
back-pressure that slows a sender down to the receiver's pace), forms batches for the writer,
and on reconnect puts every unanswered envelope back in line, with the same ids, so nothing
sent before the break is lost and the receiver can drop what it already had.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from bridge.errors import RbridgeError
from bridge.link.envelope import LINK_LOST, Envelope, Reject, batch_into

#: Called once per envelope with its token and the outcome: None for an ack, or the Reject.
ResultCallback = Callable[[Any, Envelope, Reject | None], None]


class OutboxClosed(RbridgeError):
    """The outbox no longer takes envelopes (the link is stopping)."""


class DuplicateInFlight(RbridgeError, ValueError):
    """An envelope with this id is already waiting for its answer."""


class Outbox:
    def __init__(
        self, window: int, max_batch: int, linger: float, on_result: ResultCallback
    ) -> None:
        if window < 1 or max_batch < 1:
            raise ValueError("window and max_batch must be positive")
        self.window = window
        self.max_batch = max_batch
        self.linger = linger
        self._on_result = on_result
        self._unacked: dict[str, tuple[Envelope, Any]] = {}
        self._pending: deque[str] = deque()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._has_pending = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._closed = False

    def tokens(self) -> list[Any]:
        """The tokens of every envelope not yet answered (sent or waiting to be)."""
        return [token for _, token in self._unacked.values()]

    def envelopes(self) -> list[Envelope]:
        """Every envelope not yet answered (sent or waiting to be)."""
        return [envelope for envelope, _ in self._unacked.values()]

    def __len__(self) -> int:
        """Envelopes accepted and not yet answered."""
        return len(self._unacked)

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, envelope: Envelope, token: Any = None) -> None:
        """Queue ``envelope``; waits while the window is full. Raises OutboxClosed when stopping,
        DuplicateInFlight when an envelope with its id is still waiting for its answer."""
        if await self.put_many(((envelope, token),)):
            raise DuplicateInFlight(f"envelope id {envelope.id!r} is already in flight")

    async def put_many(self, items: Sequence[tuple[Envelope, Any]]) -> list[Any]:
        """Queue (envelope, token) pairs in order, each as soon as the window has room.

        An envelope whose id is already in flight (a redelivery racing its first copy) is not
        queued again; the tokens of those are returned, and the first copy's answer stands.
        """
        unacked, pending = self._unacked, self._pending
        skipped: list[Any] = []
        index, count = 0, len(items)
        while index < count:
            room = self.window - len(unacked)
            if room <= 0 or self._closed:
                if self._closed:
                    raise OutboxClosed
                self._has_room.clear()
                await self._has_room.wait()
                continue
            for envelope, token in items[index : index + room]:
                if envelope.id in unacked:
                    skipped.append(token)
                    continue
                unacked[envelope.id] = (envelope, token)
                pending.append(envelope.id)
            index += room
            self._empty.clear()
            self._has_pending.set()
        return skipped

    async def next_batch(self) -> list[Envelope]:
        """The next envelopes to write: waits for one, then lingers briefly for more."""
        while not self._pending:
            self._has_pending.clear()
            await self._has_pending.wait()
        # Linger for a fuller batch only while earlier batches are still unanswered (the pipe is
        # busy anyway); an idle link sends at once, so a quiet site does not pay the linger.
        busy = len(self._unacked) > len(self._pending)
        if busy and len(self._pending) < self.max_batch and self.linger > 0:
            await asyncio.sleep(self.linger)
        batch: list[Envelope] = []
        unacked, pending = self._unacked, self._pending
        while pending and len(batch) < self.max_batch:
            entry = unacked.get(pending.popleft())
            if entry is not None:
                batch.append(entry[0])
        return batch

    def resolve(
        self, acked: Iterable[str] = (), rejected: Iterable[tuple[str, Reject]] = ()
    ) -> None:
        """Settle envelopes the other side answered; answers for unknown ids are ignored."""
        unacked, callback = self._unacked, self._on_result
        for envelope_id in acked:
            entry = unacked.pop(envelope_id, None)
            if entry is not None:
                callback(entry[1], entry[0], None)
        for envelope_id, reject in rejected:
            entry = unacked.pop(envelope_id, None)
            if entry is not None:
                callback(entry[1], entry[0], reject)
        if len(unacked) < self.window:
            self._has_room.set()
        if not unacked:
            self._empty.set()

    def requeue(self) -> int:
        """After a broken link: every unanswered envelope goes back in line, oldest first."""
        self._pending = deque(self._unacked)
        if self._pending:
            self._has_pending.set()
        return len(self._pending)

    async def drained(self) -> None:
        """Wait until every accepted envelope has been answered."""
        await self._empty.wait()

    def close(self) -> None:
        """Take no more envelopes; wake any sender waiting for room so it can see that."""
        self._closed = True
        self._has_room.set()

    def fail_all(self, reason: str) -> int:
        """Give up on every unanswered envelope (reported as rejected with ``link-lost``)."""
        lost = list(self._unacked)
        self.resolve(rejected=[(envelope_id, Reject(LINK_LOST, reason)) for envelope_id in lost])
        self._pending.clear()
        return len(lost)


def settle_answers(outbox: Outbox, kind: str | None, frame: Any) -> bool:
    """Settle an ``acks`` or ``rejects`` frame from the other end (both ends answer the same
    way); False for a frame of any other kind."""
    if kind == "acks":
        outbox.resolve(acked=frame.acks.ids)
    elif kind == "rejects":
        outbox.resolve(rejected=[(r.id, Reject(r.code, r.reason)) for r in frame.rejects.rejects])
    else:
        return False
    return True


async def write_frames(write: Callable[[Any], Awaitable[None]], frames: asyncio.Queue[Any]) -> None:
    """The one writer of a stream: frames go out in order; ``frames.join()`` waits for them."""
    while True:
        frame = await frames.get()
        try:
            await write(frame)
        finally:
            frames.task_done()


async def batch_frames(
    outbox: Outbox, frames: asyncio.Queue[Any], make_frame: Callable[[], Any]
) -> None:
    """Turn the outbox's batches into frames (``make_frame()`` gives a frame with a ``batch``)."""
    while True:
        batch = await outbox.next_batch()
        if batch:
            frame = make_frame()
            batch_into(frame.batch, batch)
            frames.put_nowait(frame)
