"""Keeping requests for a capability that no cloud agent consumes yet.

``RB_IN`` has interest retention: a request is removed once every consumer whose filter takes
it has acked it, and one that no consumer wants would be dropped as it is published. So before
the gateway stores requests for a capability it makes sure some consumer takes
``rb.in.<capability>``: a cloud agent's durable consumer, or else a *hold* of the gateway's own
(``hold-…``), a consumer that is never read and so keeps the capability's requests, up to the
stream's bounds, until an agent's consumer appears. Every few seconds the gateway deletes the
holds an agent's consumer now covers (that consumer, created after the requests, still has them
all) and forgets capabilities whose consumers are gone, so that their next request is held again.
Several gateway replicas may do this at once: creating or deleting a hold is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Iterable

from nats.errors import Error as NatsError
from nats.js import JetStreamContext, api
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError

from bridge.contract import STREAM_IN
from bridge.policy.subjects import SubjectPattern
from bridge.runtime.streams import consumers_of, filters_of

log = logging.getLogger("rbridge.cloud.holds")

HOLD_PREFIX = "hold-"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def hold_name(subject: str) -> str:
    """A consumer name for the hold of ``subject``: readable, and distinct for distinct subjects."""
    digest = hashlib.sha256(subject.encode()).hexdigest()[:12]
    return f"{HOLD_PREFIX}{_UNSAFE.sub('_', subject)[:160]}-{digest}"


def _covered(subject: str, consumers: Iterable[api.ConsumerInfo]) -> bool:
    tokens = subject.split(".")
    return any(
        SubjectPattern.parse(pattern).matches(tokens)
        for consumer in consumers
        for pattern in filters_of(consumer)
    )


class Holds:
    """Makes sure a consumer takes each subject before anything is stored on it."""

    def __init__(self, js: JetStreamContext, *, stream: str = STREAM_IN) -> None:
        self.js = js
        self.stream = stream
        self.covered: set[str] = set()
        self._lock = asyncio.Lock()

    async def ensure(self, subjects: Iterable[str]) -> None:
        """Raises NATS or JetStream errors when it cannot tell or cannot hold (store nothing)."""
        subjects = list(subjects)
        if all(subject in self.covered for subject in subjects):
            return
        async with self._lock:
            missing = {subject for subject in subjects if subject not in self.covered}
            if not missing:
                return
            consumers = await consumers_of(self.js, self.stream)
            for subject in sorted(missing):
                if not _covered(subject, consumers):
                    await self._hold(subject)
                self.covered.add(subject)

    async def _hold(self, subject: str) -> None:
        await self.js.add_consumer(
            self.stream,
            config=api.ConsumerConfig(
                durable_name=hold_name(subject),
                description=f"rbridge: keeps {subject} until a cloud agent consumes it",
                ack_policy=api.AckPolicy.EXPLICIT,
                filter_subject=subject,
            ),
        )
        log.info("holding %s: no cloud agent consumes it yet", subject)

    async def hold_waiting(self) -> None:
        """Hold every subject that has messages in the stream and no consumer (before a stream
        of an older version becomes an interest stream, which would drop them)."""
        try:
            info = await self.js.stream_info(self.stream, subjects_filter=">")
        except NotFoundError:
            return
        await self.ensure(info.state.subjects or {})

    async def tidy(self) -> None:
        """Delete the holds an agent's consumer covers; forget subjects nothing covers now."""
        async with self._lock:
            consumers = await consumers_of(self.js, self.stream)
            agents = [c for c in consumers if not c.name.startswith(HOLD_PREFIX)]
            remaining = []
            for consumer in consumers:
                if not consumer.name.startswith(HOLD_PREFIX):
                    continue
                subjects = filters_of(consumer)
                if all(_covered(subject, agents) for subject in subjects):
                    with contextlib.suppress(NotFoundError):  # another replica was first
                        await self.js.delete_consumer(self.stream, consumer.name)
                    log.info("%s is consumed now: its hold is released", ", ".join(subjects))
                else:
                    remaining.append(consumer)
            self.covered = {s for s in self.covered if _covered(s, agents + remaining)}

    async def run(self, every: float = 5.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.tidy()
            except (NatsError, JetStreamError, TimeoutError) as error:
                log.warning("cannot tidy the holds on %s: %s", self.stream, type(error).__name__)
