"""What the edge published lately, to publish again when it may have been lost.

Core NATS keeps nothing in flight. A reply the edge publishes through a server as that server
dies, or to an agent whose connection is moving to another server, is gone, though the cloud's
answer was stored and the link acknowledged it. So the edge remembers what it published (replies,
deny notices, cloud requests) for a short while, and publishes a copy again:

- when its own NATS connection came back: what it published since the server last confirmed
  having it all (a silent server is noticed late), shortly before that included;
- when an agent asks on ``rb.replies.again``, naming the reply subjects it still waits on (the
  agent SDK does so when its own connection came back).

A copy goes only to the subject it was first published to, so asking cannot redirect a reply,
and one reply is sent again on request a few times at most. Memory is bounded by age, count and
bytes, oldest first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson
from nats.aio.msg import Msg

from bridge.contract import REPLIES_AGAIN, REPLIES_AGAIN_MAX
from bridge.edge.metrics import EdgeMetrics
from bridge.errors import RbridgeError
from bridge.recent import Recent, message_size
from bridge.runtime.ports import Bus

log = logging.getLogger("rbridge.edge")

#: How long a published message is remembered, at most.
KEEP_SECONDS: Final = 120.0
MAX_COUNT: Final = 100_000
MAX_BYTES: Final = 64 * 1024 * 1024
#: What the edge publishes again when its connection came back: what it published since the
#: server last confirmed having everything (or since it noticed the loss, if that is earlier),
#: and this long before, for a server that took a message and died before passing it on.
RECONNECT_GRACE: Final = 2.0
#: How often one reply is sent again because an agent asked (the SDK asks three times after
#: each reconnect).
MAX_ASKED_AGAIN: Final = 8
#: Subjects an agent may name in one request, and how long one may be.
MAX_SUBJECTS: Final = REPLIES_AGAIN_MAX
MAX_SUBJECT_LENGTH: Final = 512
#: Only the inboxes of waiting requesters are sent again on request.
INBOX_PREFIX: Final = "_INBOX."
#: What a remembered message costs beyond its bytes (objects, dictionary slots).
_OVERHEAD: Final = 400


@dataclass(slots=True)
class Sent:
    subject: str
    payload: bytes
    headers: dict[str, str]
    at: float
    size: int
    asked_again: int = 0


class AgainRequestError(RbridgeError, ValueError):
    """An ``rb.replies.again`` request that is not a JSON list of reply subjects."""


def requested_subjects(data: bytes) -> list[str]:
    """The reply subjects an ``rb.replies.again`` request names (a JSON list of strings)."""
    try:
        subjects = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise AgainRequestError("not JSON") from None
    if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
        raise AgainRequestError("not a list of subjects")
    if len(subjects) > MAX_SUBJECTS:
        raise AgainRequestError(f"more than {MAX_SUBJECTS} subjects")
    return [s for s in subjects if s.startswith(INBOX_PREFIX) and len(s) <= MAX_SUBJECT_LENGTH]


class RecentlySent:
    """Published messages, oldest first, and the latest one per subject."""

    def __init__(
        self,
        keep_seconds: float = KEEP_SECONDS,
        max_count: int = MAX_COUNT,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self._sent: Recent[int, Sent] = Recent(
            keep_seconds, max_count, max_bytes, clock, forgotten=self._forgotten
        )
        self._latest: dict[str, int] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self._sent)

    def remember(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        size = message_size(headers, subject, payload) + _OVERHEAD
        self._next += 1
        self._latest[subject] = self._next
        self._sent.add(self._next, Sent(subject, payload, headers, self.clock(), size))

    def since(self, moment: float) -> list[Sent]:
        """What was published at ``moment`` or later, in order."""
        self._sent.forget()
        found = []
        for sent in self._sent.newest_first():
            if sent.at < moment:
                break
            found.append(sent)
        found.reverse()
        return found

    def asked_again(self, subjects: Iterable[str]) -> list[Sent]:
        """The latest message published to each subject, if it may be sent again on request."""
        self._sent.forget()
        found = []
        for subject in dict.fromkeys(subjects):
            key = self._latest.get(subject)
            sent = None if key is None else self._sent.get(key)
            if sent is not None and sent.asked_again < MAX_ASKED_AGAIN:
                sent.asked_again += 1
                found.append(sent)
        return found

    def _forgotten(self, key: int, sent: Sent) -> None:
        if self._latest.get(sent.subject) == key:
            del self._latest[sent.subject]

    @property
    def bytes(self) -> int:  # last in the class: the name would hide the type above
        return self._sent.bytes


class Resender:
    """Publishes for the edge, remembering, and publishes again when a loss is possible."""

    def __init__(self, bus: Bus, metrics: EdgeMetrics, recent: RecentlySent | None = None) -> None:
        self.bus = bus
        self.metrics = metrics
        self.recent = recent if recent is not None else RecentlySent()
        self._lost_at: float | None = None
        self._confirmed_at: float | None = None

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        self.recent.remember(subject, payload, headers)
        await self.bus.publish(subject, payload, headers=headers)

    async def publish_many(self, messages: Sequence[tuple[str, bytes, dict[str, str]]]) -> None:
        """Publish them in order, as one batch (each remembered first)."""
        for subject, payload, headers in messages:
            self.recent.remember(subject, payload, headers)
        await self.bus.publish_many(messages)

    def moment(self) -> float:
        return self.recent.clock()

    def confirmed(self, moment: float) -> None:
        """NATS confirmed having everything published before ``moment`` (a flush)."""
        self._confirmed_at = moment

    def connection_lost(self) -> None:
        """The NATS connection dropped (nats-py's ``disconnected_cb``)."""
        if self._lost_at is None:
            self._lost_at = self.recent.clock()

    async def connection_back(self) -> None:
        """The NATS connection is back (``reconnected_cb``): what was published shortly before
        the loss was noticed, and since, may not have reached anyone; publish it again."""
        if self._lost_at is None:
            return
        doubt_from, self._lost_at = self._lost_at, None
        if self._confirmed_at is not None:
            doubt_from = min(doubt_from, self._confirmed_at)
        again = self.recent.since(doubt_from - RECONNECT_GRACE)
        await self._again(again, "reconnected")
        if again:
            log.warning(
                "NATS connection back: published again %d message(s) sent around the loss",
                len(again),
            )

    async def on_again(self, message: Msg) -> None:
        """An agent asks for what was sent to its reply subjects (``rb.replies.again``)."""
        try:
            subjects = requested_subjects(message.data)
        except AgainRequestError as error:
            self.metrics.again_requests_refused.inc()
            log.debug("ignored a request on %s: %s", REPLIES_AGAIN, error)
            return
        await self._again(self.recent.asked_again(subjects), "asked")

    async def _again(self, messages: list[Sent], why: str) -> None:
        if messages:
            await self.bus.publish_many([(s.subject, s.payload, s.headers) for s in messages])
            self.metrics.sent_again.labels(why).inc(len(messages))
