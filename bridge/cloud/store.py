"""Storing a site's envelopes in the cloud stream, with the gateway's own checks first.

Each envelope becomes a message on ``rb.in.<capability>`` in ``RB_IN`` with ``Nats-Msg-Id`` set
to the envelope id, so a resend after a broken link is dropped by JetStream's duplicate window.
The gateway sets its own ``Rb-*`` headers and drops any ``Nats-*``/``Rb-*`` header the site sent.
Before storing, it refuses envelopes of a policy revision it does not accept and runs its own
leak guard over the payload: defence in depth, should an edge be misconfigured or compromised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError

from bridge import tracing
from bridge.contract import (
    HEADER_CLASS,
    HEADER_MSG_ID,
    HEADER_POLICY,
    HEADER_RB_MSG_ID,
    HEADER_REPLY_TOKEN,
    HEADER_RULE,
    HEADER_SITE,
    inbound_subject,
)
from bridge.link import Envelope, Reject, SiteIdentity
from bridge.link.envelope import STORE_FAILED, STORE_REFUSED, RejectCode
from bridge.policy.detectors import BUILTIN_DETECTORS, DetectorSet
from bridge.policy.leakguard import LeakGuard
from bridge.policy.reasons import Reason, ReasonKind
from bridge.policy.subjects import SubjectPattern
from bridge.runtime.headers import header_problem, passthrough
from bridge.runtime.ports import Publisher
from bridge.runtime.publisher import PERMANENT_PREFIX
from bridge.tracing import Span, SpanKind

log = logging.getLogger("rbridge.cloud.store")
YIELD_EVERY = 16
"""Envelopes checked between two chances for the rest of the gateway to run."""


class Interest(Protocol):
    async def ensure(self, subjects: Iterable[str]) -> None: ...


class StoreMetrics(Protocol):
    def stored(self, site: str, count: int) -> None: ...
    def refused(self, site: str, code: str) -> None: ...
    def leak(self, site: str, detector: str) -> None: ...
    def store_time(self, seconds: float) -> None: ...


@dataclass
class CloudGuard:
    """The gateway's own leak guard: classes refused unless permitted for the capability."""

    guard: LeakGuard
    permits: tuple[tuple[SubjectPattern, frozenset[str]], ...]

    @classmethod
    def of(cls, refuse: Sequence[str], permit: Mapping[str, Sequence[str]]) -> CloudGuard:
        scanner = DetectorSet.of(BUILTIN_DETECTORS[name] for name in refuse)
        return cls(
            LeakGuard(scanner),
            tuple((SubjectPattern.parse(p), frozenset(names)) for p, names in permit.items()),
        )

    def finding(self, capability: str, payload: bytes) -> str | None:
        allowed: frozenset[str] = frozenset()
        tokens = capability.split(".")
        for pattern, names in self.permits:
            if pattern.matches(tokens):
                allowed = names
                break
        return self.guard.first_unpermitted(payload, allowed)


class CloudStore:
    """The link gateway's outbound handler."""

    def __init__(
        self,
        publisher: Publisher,
        guard: CloudGuard,
        *,
        min_revision: int,
        metrics: StoreMetrics,
        interest: Interest | None = None,
    ) -> None:
        self.publisher = publisher
        self.interest = interest
        self.guard = guard
        self.min_revision = min_revision
        self.metrics = metrics
        self._revisions_refused: set[tuple[str, int]] = set()  # logged once each

    async def accept(
        self, site: SiteIdentity, envelopes: Sequence[Envelope]
    ) -> Sequence[Reject | None]:
        answers: list[Reject | None] = [None] * len(envelopes)
        items: list[tuple[str, bytes, Mapping[str, str]]] = []
        positions: list[int] = []
        spans: dict[int, Span | None] = {}
        for position, envelope in enumerate(envelopes):
            if position and not position % YIELD_EVERY:
                # The checks are CPU work: let other sites' frames and replies in between.
                await asyncio.sleep(0)
            refusal = self._check(site, envelope)
            if refusal is not None:
                answers[position] = refusal
                self.metrics.refused(site.site, refusal.code)
                continue
            headers = passthrough(envelope.headers)
            headers.update(
                {
                    HEADER_MSG_ID: envelope.id,
                    HEADER_RB_MSG_ID: envelope.id,
                    HEADER_SITE: site.site,
                    HEADER_RULE: envelope.rule,
                    HEADER_POLICY: str(envelope.policy_revision),
                    HEADER_CLASS: envelope.classification,
                }
            )
            if envelope.reply_token:
                headers[HEADER_REPLY_TOKEN] = envelope.reply_token
            if envelope.traceparent:
                headers["traceparent"] = envelope.traceparent
            traced = tracing.enabled() and envelope.traceparent
            if traced and tracing.sampled({"traceparent": envelope.traceparent}):  # recorded
                span = tracing.start(
                    "rbridge.store",
                    {"traceparent": envelope.traceparent},
                    kind=SpanKind.CONSUMER,
                    attributes={
                        "rbridge.site": site.site,
                        "rbridge.capability": envelope.capability,
                    },
                )
                spans[position] = span
                headers.pop("tracestate", None)
                tracing.inject(headers, span)
            items.append((inbound_subject(envelope.capability), envelope.payload, headers))
            positions.append(position)
        if items:
            started = time.monotonic()
            results = await self._store(items)
            self.metrics.store_time(time.monotonic() - started)
            stored = 0
            for position, error in zip(positions, results, strict=True):
                if spans:
                    tracing.end(spans.get(position), None if error is None else error[:120])
                if error is None:
                    stored += 1
                else:
                    # JetStream's "bad request" (400) will not change on a resend (a message
                    # larger than the stream takes, say): refused for good, so the edge does not
                    # decide and audit it again on every redelivery. The rest (a full stream,
                    # no leader, a timeout) may pass later.
                    code = STORE_REFUSED if error.startswith(PERMANENT_PREFIX) else STORE_FAILED
                    answers[position] = Reject(code, error)
                    self.metrics.refused(site.site, code)
            self.metrics.stored(site.site, stored)
        return answers

    async def _store(self, items: list[tuple[str, bytes, Mapping[str, str]]]) -> list[str | None]:
        """Publish, once a consumer takes every subject (RB_IN would drop what none wants)."""
        if self.interest is not None:
            try:
                await self.interest.ensure(subject for subject, _, _ in items)
            except (NatsError, JetStreamError, TimeoutError) as error:
                reason = f"cannot make sure a consumer keeps the request: {type(error).__name__}"
                return [reason] * len(items)
        return await self.publisher.publish_many(items)

    def _check(self, site: SiteIdentity, envelope: Envelope) -> Reject | None:
        if envelope.policy_revision < self.min_revision:
            if (site.site, envelope.policy_revision) not in self._revisions_refused:
                self._revisions_refused.add((site.site, envelope.policy_revision))
                log.warning(
                    "refusing envelopes of site %s: policy revision %d is below this gateway's "
                    "minimum %d (min_policy_revision)",
                    site.site, envelope.policy_revision, self.min_revision,
                )  # fmt: skip
            return Reject(
                RejectCode.REVISION_REFUSED,
                f"policy revision {envelope.policy_revision} is older than the gateway's "
                f"minimum {self.min_revision}",
            )
        problem = header_problem(envelope.headers)
        if problem is not None:
            return Reject(RejectCode.BAD_HEADER, problem)
        found = self.guard.finding(envelope.capability, envelope.payload)
        if found is not None:
            self.metrics.leak(site.site, found)
            log.warning(
                "cloud leak guard refused an envelope from site %s: class %s",
                site.site,
                found,
                extra={
                    "msg_id": envelope.id,
                    "site": site.site,
                    "reason": Reason.of(ReasonKind.LEAK_GUARD, found),
                },
            )
            return Reject(RejectCode.LEAK_GUARD, f"the payload holds a value of class {found!r}")
        return None
