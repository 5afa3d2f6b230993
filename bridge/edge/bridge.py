"""The edge bridge: from RB_OUT to the cloud, through the policy and the audit trail.

For each batch pulled from the durable consumer: decide every message with one engine (a
reload never splits a batch), append and flush the audit records, then forward the allowed
envelopes on a link to a destination their rule allows, terminate the denied ones (telling the
sender, status only, and optionally keeping a copy in quarantine), and put back those whose
every allowed destination is down. A message is acked in RB_OUT only when the cloud acked it.
If the audit trail cannot be written, nothing of the batch is forwarded: it is put back and the
bridge reports itself unhealthy until a write succeeds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

from nats.errors import NotJSMessageError

from bridge import tracing
from bridge.audit import AuditTrail, AuditWriteError
from bridge.audit.records import CloudRefusalRecord, DecisionRecord, InboundRecord
from bridge.audit.trail import digest
from bridge.contract import (
    HEADER_DETAIL,
    HEADER_MSG_ID,
    HEADER_RB_MSG_ID,
    HEADER_REASON,
    HEADER_REPLY_TO,
    HEADER_RULE,
    HEADER_SITE,
    HEADER_STATUS,
    OUTBOUND_PREFIX,
)
from bridge.edge.delivered import Resender
from bridge.edge.metrics import EdgeMetrics
from bridge.edge.policy_source import PolicySource
from bridge.edge.replyroutes import ReplySubjects
from bridge.edge.tokens import (
    MemorySpentTokens,
    ReplyRoute,
    ReplyTokens,
    SpentTokens,
    reply_fingerprint,
)
from bridge.link import EdgeLink, Envelope, Reject
from bridge.link.envelope import LINK_LOST, RETRIABLE, RejectCode
from bridge.policy import Decision, Message
from bridge.policy.payload import PayloadError
from bridge.policy.reasons import Reason, ReasonKind
from bridge.policy.subjects import subject_error
from bridge.runtime.background import Background
from bridge.runtime.headers import carriable, header_problem, passthrough
from bridge.runtime.ports import Bus, Publisher, Pulled
from bridge.runtime.settlement import Settlement
from bridge.tracing import Span, SpanKind

log = logging.getLogger("rbridge.edge")
QUARANTINE_PREFIX = "rb.quarantine."
_REPLY_TO_KEY = HEADER_REPLY_TO.lower()
_BAD_HEADER = Reason.of(ReasonKind.BAD_HEADER)
#: How long the edge waits for its NATS server to confirm deliveries before the link's answer.
FLUSH_SECONDS = 5


class Delivery(NamedTuple):
    """An inbound envelope the policy let through: where it goes, in what form, and why."""

    subject: str
    payload: bytes
    headers: dict[str, str]
    kind: str
    rule: str | None
    reidentified: int


class Refused(Exception):
    """An inbound envelope the edge refuses: the answer for the link and the audit reason."""

    def __init__(self, reject: Reject, reason: str) -> None:
        super().__init__(reason)
        self.reject = reject
        self.reason = reason


_D = TypeVar("_D")


@dataclass(slots=True)
class Pending:
    """What the link's answer for one envelope needs: the message to ack and when it was pulled."""

    message: Pulled
    pulled: float
    capability: str
    reply_to: str
    span: Span | None = None  # the link send's span (tracing on): ended by the cloud's answer


class EdgeBridge:
    def __init__(
        self,
        *,
        site: str,
        nc: Bus,
        publisher: Publisher,
        policy: PolicySource,
        audit: AuditTrail,
        links: Mapping[str, EdgeLink],
        tokens: ReplyTokens,
        metrics: EdgeMetrics,
        quarantine: bool = False,
        reply_subjects: ReplySubjects | None = None,
        spent: SpentTokens | None = None,
    ) -> None:
        self.site = site
        self.nc = nc
        self.publisher = publisher
        self.policy = policy
        self.audit = audit
        self.links = links
        self.tokens = tokens
        self.metrics = metrics
        self.quarantine = quarantine
        self.reply_subjects = reply_subjects or ReplySubjects()
        self.spent: SpentTokens = spent if spent is not None else MemorySpentTokens()
        self.settlement = Settlement()
        self.background = Background()
        self.deferred = 0
        #: Publishes replies, notices and cloud requests, and again when one may be lost.
        self.resender = Resender(nc, metrics)

    # --- outbound ------------------------------------------------------------------------

    async def process(self, messages: Sequence[Pulled]) -> None:
        """Decide, audit, then forward / deny / put back one batch of RB_OUT messages."""
        loaded = self.policy.current
        assert loaded is not None
        engine = loaded.engine
        now = time.monotonic()
        records: list[DecisionRecord] = []
        decisions: list[Decision] = []
        forwards: dict[str, list[tuple[Envelope, Any]]] = {}
        denied: list[tuple[Pulled, Decision, str]] = []
        waiting: list[Pulled] = []
        up = {name for name, link in self.links.items() if link.state == "up"}
        for message in messages:
            capability = (
                message.subject[len(OUTBOUND_PREFIX) :]
                if message.subject.startswith(OUTBOUND_PREFIX)
                else ""
            )
            headers = message.headers or {}
            msg_id = self._message_id(message, headers)
            problem = header_problem(headers)
            if problem is not None:
                decision = Decision(
                    "deny", _BAD_HEADER, None, engine.name, loaded.revision, detail=problem
                )
            else:
                decision = engine.evaluate(Message(capability, message.data, headers))
            reply_to, reply_refused = self._reply_route(headers, decision)
            destination = None
            send_span = None
            if decision.allowed:
                destination = next((name for name in decision.destinations if name in up), None)
                if tracing.enabled():
                    send_span = _trace_decision(capability, headers, decision, destination)
                if destination is None:
                    waiting.append(message)
                    continue
                assert decision.payload is not None
                token = ""
                if reply_to:
                    token = self.tokens.seal(ReplyRoute(reply_to, capability, msg_id))
                envelope = Envelope(
                    id=msg_id,
                    capability=capability,
                    payload=decision.payload,
                    classification=decision.classification or "",
                    rule=decision.rule or "",
                    policy_revision=decision.revision,
                    reply_token=token,
                    headers=passthrough(headers),
                    created_unix_ms=int(time.time() * 1000),
                    traceparent=tracing.traceparent(send_span)
                    or headers.get("traceparent", "")[:128],
                )
                forwards.setdefault(destination, []).append(
                    (envelope, Pending(message, now, capability, reply_to, send_span))
                )
            else:
                if tracing.enabled():
                    _trace_decision(capability, headers, decision, None)
                denied.append((message, decision, reply_to))
            record = self._record(msg_id, capability, decision, destination, message.data)
            if reply_refused:
                record["reply"] = reply_refused
            records.append(record)
            decisions.append(decision)
        try:
            self.audit.append(records)
        except AuditWriteError as error:
            self.metrics.audit_errors.inc()
            log.error("audit trail not writable, nothing forwarded: %s", error)
            for message in messages:
                self.settlement.nak(message, delay=1.0)
            return
        self._count(decisions)
        for destination, items in forwards.items():
            await self.links[destination].send_many(items)
        for message, decision, reply_to in denied:
            await self._deny(message, decision, reply_to)
        for message in waiting:
            self.settlement.nak(message, delay=1.0)
        if waiting:
            self.deferred += len(waiting)
            self.metrics.waiting.inc(len(waiting))

    def _reply_route(self, headers: Mapping[str, str], decision: Decision) -> tuple[str, str]:
        """The reply subject the bridge may publish on for this message ("" if none), and why
        a given one was refused ("" if it was not)."""
        if decision.reason == _BAD_HEADER:  # (a string compare: this runs for every message)
            # Headers the bridge will not read, reply subject included; the engine also denies
            # two spellings of one Rb-* header this way, so below there is at most one.
            return "", ""
        reply_to = headers.get(HEADER_REPLY_TO)
        if reply_to is None:  # another spelling (rare: the SDKs write the canonical one)
            reply_to = next((v for k, v in headers.items() if k.lower() == _REPLY_TO_KEY), "")
        if not reply_to:
            return "", ""
        refusal = self.reply_subjects.refusal(reply_to)
        if refusal is not None:
            self.metrics.reply_routes_refused.labels(refusal).inc()
            return "", refusal
        return reply_to, ""

    def _message_id(self, message: Pulled, headers: Mapping[str, str]) -> str:
        given = headers.get(HEADER_MSG_ID, "")
        if given and len(given) <= 128 and given.isprintable() and " " not in given:
            return f"{self.site}/{given}"
        return f"{self.site}/seq-{message.metadata.sequence.stream}"

    def _record(
        self, msg_id: str, capability: str, decision: Decision, destination: str | None, data: bytes
    ) -> DecisionRecord:
        return {
            "direction": "outbound",
            "site": self.site,
            "msg_id": msg_id,
            "subject": capability[:256],
            "decision": decision.verdict,
            "rule": decision.rule,
            "reason": decision.reason,
            "destination": destination,
            "classification": decision.classification,
            "transforms": [
                {"path": t.path, "action": t.action, "places": t.places}
                for t in decision.transforms
                if t.places
            ],
            "input_sha256": digest(data),
            "output_sha256": digest(decision.payload) if decision.payload is not None else None,
            "policy": decision.policy,
            "revision": decision.revision,
        }

    def _count(self, decisions: Sequence[Decision]) -> None:
        # Tally per batch first: a labelled child lookup costs more than the increment.
        verdicts: dict[tuple[str, str], int] = {}
        actions: dict[str, int] = {}
        leaks: dict[str, int] = {}
        for decision in decisions:
            key = (decision.verdict, decision.rule or "none")
            verdicts[key] = verdicts.get(key, 0) + 1
            for applied in decision.transforms:
                if applied.places:
                    actions[applied.action] = actions.get(applied.action, 0) + applied.places
            if not decision.allowed and decision.reason.kind is ReasonKind.LEAK_GUARD:
                leaks[decision.reason.detail] = leaks.get(decision.reason.detail, 0) + 1
        metrics = self.metrics
        for (verdict, rule), count in verdicts.items():
            metrics.messages.labels("outbound", verdict, rule).inc(count)
        for action, count in actions.items():
            metrics.transforms.labels(action).inc(count)
        for detector, count in leaks.items():
            metrics.leak_hits.labels(detector).inc(count)

    async def _deny(self, message: Pulled, decision: Decision, reply_to: str) -> None:
        self.settlement.term(message)
        await self._quarantine(message, decision.reason, decision.rule or "")
        await self._notify(reply_to, decision)

    async def _quarantine(self, message: Pulled, reason: Reason, rule: str) -> None:
        """A copy of a message that will not leave (denied, or refused by the cloud for good),
        with why, in RB_QUARANTINE for review: when quarantine is enabled."""
        if not self.quarantine:
            return
        # A message denied for its headers keeps those it can carry (the rest would fail the
        # publish, and the copy with them).
        headers = carriable(passthrough(message.headers or {}))
        headers.update({HEADER_REASON: reason, HEADER_RULE: rule})
        capability = message.subject[len(OUTBOUND_PREFIX) :]
        subject = QUARANTINE_PREFIX + (
            capability if subject_error(capability, pattern=False) is None else "invalid"
        )
        try:
            (problem,) = await self.publisher.publish_many([(subject, message.data, headers)])
        except Exception as error:
            problem = type(error).__name__
        if problem is not None:
            log.error("could not quarantine a message: %s", problem[:200])

    async def _notify(self, reply_to: str, decision: Decision) -> None:
        # Only ever a subject _reply_route vetted (the audit holds why others were refused).
        if not reply_to or self.reply_subjects.refusal(reply_to) is not None:
            return
        headers = {
            HEADER_STATUS: "denied",
            HEADER_REASON: decision.reason,
            HEADER_RULE: decision.rule or "",
        }
        if decision.detail:
            # The bridge's own words (limits, classes, revisions), never a value of the message.
            headers[HEADER_DETAIL] = " ".join(decision.detail.split())[:300]
        await self.resender.publish(reply_to, b"", headers)

    def on_result(self, token: Any, envelope: Envelope, reject: Reject | None) -> None:
        """The link's answer for one envelope: ack, put back, or terminate in RB_OUT."""
        pending: Pending = token
        tracing.end(pending.span, None if reject is None else reject.code)
        if reject is None:
            self.settlement.ack(pending.message)
            self.metrics.forward_seconds.observe(time.monotonic() - pending.pulled)
            return
        if reject.code in RETRIABLE:
            # Not stored this time (link lost, the cloud's store full or unavailable): RB_OUT
            # redelivers it. A cloud that stays full is asked later each time (0.5 s doubling
            # to 5 s); after a lost link, at once again.
            self.settlement.nak(pending.message, delay=_retry_delay(reject, pending.message))
            return
        # The cloud refused it for good (capability, its leak guard, revision): record, tell, drop.
        self.metrics.cloud_rejects.labels(reject.code).inc()
        log.warning(
            "the cloud refused a message: %s (%s)",
            reject.code,
            reject.reason[:300],
            extra={"msg_id": envelope.id, "code": reject.code},
        )
        reason = Reason.of(ReasonKind.CLOUD, reject.code)
        record: CloudRefusalRecord = {
            "direction": "outbound", "site": self.site, "msg_id": envelope.id,
            "subject": envelope.capability, "decision": "refused-by-cloud", "rule": envelope.rule,
            "reason": reason, "policy": self.policy.engine.name, "revision": envelope.policy_revision,
        }  # fmt: skip
        try:
            self.audit.append([record])
        except AuditWriteError:
            self.metrics.audit_errors.inc()
        self.settlement.term(pending.message)
        self.background.spawn(self._quarantine(pending.message, reason, envelope.rule))
        if pending.reply_to:
            decision = Decision(
                "deny", reason, envelope.rule, "", envelope.policy_revision,
                detail=f"the gateway said: {reject.reason}",
            )  # fmt: skip
            self.background.spawn(self._notify(pending.reply_to, decision))

    # --- inbound: replies and requests from the cloud ------------------------------------

    async def accept(self, envelopes: Sequence[Envelope]) -> Sequence[Reject | None]:
        """Replies and cloud-initiated requests: deliver what the policy allows, audit all."""
        outcomes: list[Delivery | Refused] = []
        spending: list[tuple[int, ReplyRoute, str]] = []
        for position, envelope in enumerate(envelopes):
            try:
                if envelope.reply_token:
                    delivery, route = self._reply(envelope)
                    spending.append(
                        (position, route, reply_fingerprint(envelope.id, envelope.payload))
                    )
                else:
                    delivery = self._request(envelope)
            except Refused as refused:
                outcomes.append(refused)
                continue
            outcomes.append(delivery)
        if spending:
            await self._spend(spending, outcomes)
        answers: list[Reject | None] = []
        deliveries: list[Delivery] = []
        records: list[InboundRecord] = []
        for envelope, outcome in zip(envelopes, outcomes, strict=True):
            if tracing.enabled():
                _trace_inbound(envelope, outcome)
            if isinstance(outcome, Refused):
                answers.append(outcome.reject)
                records.append(self._inbound_record(envelope, "refused", outcome.reason, None, 0))
                continue
            deliveries.append(outcome)
            records.append(
                self._inbound_record(
                    envelope, "delivered", outcome.kind, outcome.rule, outcome.reidentified
                )
            )
            answers.append(None)
        try:
            self.audit.append(records)
        except AuditWriteError:
            self.metrics.audit_errors.inc()
            return [Reject(LINK_LOST, "the edge cannot audit right now")] * len(envelopes)
        if deliveries:
            try:
                await self.resender.publish_many(
                    [(d.subject, d.payload, d.headers) for d in deliveries]
                )
            except Exception as error:  # not connected, or a message NATS refused whole
                log.warning("could not publish deliveries: %s", type(error).__name__)
                return [Reject(LINK_LOST, "the edge's NATS did not take them")] * len(envelopes)
            flushed = self.resender.moment()
            try:  # acknowledged once NATS has them: an edge killed now loses none of them
                await self.nc.flush(FLUSH_SECONDS)
                self.resender.confirmed(flushed)
            except Exception as error:  # the cloud sends them again (the same reply: delivered)
                log.warning("NATS did not confirm deliveries: %s", type(error).__name__)
                return [Reject(LINK_LOST, "the edge's NATS did not take them")] * len(envelopes)
        for record in records:
            self.metrics.messages.labels(
                "inbound", record["decision"], record["rule"] or "none"
            ).inc()
        return answers

    async def _spend(
        self, spending: list[tuple[int, ReplyRoute, str]], outcomes: list[Delivery | Refused]
    ) -> None:
        """Spend each reply's token; a token another reply spent refuses this one."""
        try:
            results = await self.spent.spend_many(
                [(route.token_id, fingerprint) for _, route, fingerprint in spending]
            )
        except Exception as error:  # NATS gone: refuse the batch, the gateway sends it again
            results = [error] * len(spending)
        for (position, _, _), result in zip(spending, results, strict=True):
            if result is True:
                continue
            if isinstance(result, Exception):
                log.warning("could not record a spent reply token: %s", type(result).__name__)
                reject = Reject(LINK_LOST, "the edge cannot record spent reply tokens right now")
                outcomes[position] = Refused(reject, "token-store-unavailable")
                continue
            self.metrics.reply_tokens_replayed.inc()
            reject = Reject(
                RejectCode.TOKEN_SPENT, "this reply token was already used by another reply"
            )
            outcomes[position] = Refused(reject, RejectCode.TOKEN_SPENT)

    def _reply(self, envelope: Envelope) -> tuple[Delivery, ReplyRoute]:
        """A reply to a message this site sent: its sealed token says where it goes."""
        try:
            route = self.tokens.open(envelope.reply_token)
        except ValueError as error:
            raise Refused(Reject(RejectCode.BAD_TOKEN, str(error)), RejectCode.BAD_TOKEN) from None
        refusal = self.reply_subjects.refusal(route.reply_to)
        if refusal is not None:
            # A token sealed under looser settings: the bridge still publishes only where allowed.
            raise Refused(Reject(refusal, "the reply subject is not allowed here"), refusal)
        _check_headers(envelope)
        reply = self._evaluate(self.policy.engine.evaluate_reply, route.capability, envelope)
        headers = passthrough(envelope.headers)
        headers.update({HEADER_STATUS: "ok", HEADER_RB_MSG_ID: route.msg_id})
        delivery = Delivery(
            route.reply_to, reply.payload, headers, "reply", reply.rule, reply.reidentified
        )
        return delivery, route

    def _request(self, envelope: Envelope) -> Delivery:
        """A request the cloud started: only to a local subject an inbound rule allows."""
        subject = envelope.capability
        _check_headers(envelope)
        request = self._evaluate(self.policy.engine.evaluate_inbound, subject, envelope)
        if request is None:
            reject = Reject(
                RejectCode.INBOUND_NOT_ALLOWED, "no inbound rule allows this local subject"
            )
            raise Refused(reject, RejectCode.INBOUND_NOT_ALLOWED)
        headers = passthrough(envelope.headers)
        headers.update({HEADER_SITE: self.site, HEADER_RB_MSG_ID: envelope.id})
        headers[HEADER_RULE] = request.rule or ""
        return Delivery(
            subject, request.payload, headers, "request", request.rule, request.reidentified
        )

    @staticmethod
    def _evaluate(evaluate: Callable[[str, bytes], _D], subject: str, envelope: Envelope) -> _D:
        try:
            return evaluate(subject, envelope.payload)
        except PayloadError as error:
            raise Refused(
                Reject(RejectCode.BAD_PAYLOAD, error.detail),
                Reason.of(ReasonKind.PAYLOAD, error.code),
            ) from None
        except Exception as error:  # refuse this envelope alone, never the batch around it
            reason = Reason.of(ReasonKind.ERROR, type(error).__name__)
            raise Refused(
                Reject(RejectCode.BAD_PAYLOAD, "the edge could not read it"), reason
            ) from None

    def _inbound_record(
        self,
        envelope: Envelope,
        decision: Literal["delivered", "refused"],
        reason: str,
        rule: str | None,
        reidentified: int,
    ) -> InboundRecord:
        return {
            "direction": "inbound",
            "site": self.site,
            "msg_id": envelope.id[:160],
            "subject": envelope.capability[:256],
            "decision": decision,
            "rule": rule,
            "reason": reason,
            "reidentified": reidentified,
            "input_sha256": digest(envelope.payload),
            "policy": self.policy.engine.name,
            "revision": self.policy.current.revision if self.policy.current else None,
        }


def _trace_decision(
    capability: str, headers: Mapping[str, str], decision: Decision, destination: str | None
) -> Span | None:
    """The decision's span (ended), child of the sender's; for an allowed message going to a
    destination, the link send's span, its child, started (the cloud's answer ends it)."""
    if tracing.sampled(headers) is False:
        return None  # the sender's trace is not recorded: nor is this hop
    decided = tracing.start("rbridge.decide", headers)
    if decided is None or not decided.is_recording():
        tracing.end(decided)  # a trace starting here, not sampled: nothing after it either
        return None
    decided.set_attributes(_decision_attributes(capability, decision))
    tracing.end(decided)
    if destination is None or not decision.allowed:
        return None
    return tracing.start(
        "rbridge.link.send",
        parent=decided,
        kind=SpanKind.PRODUCER,
        attributes={"rbridge.destination": destination},
    )


def _decision_attributes(capability: str, decision: Decision) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "rbridge.capability": capability[:256],
        "rbridge.verdict": decision.verdict,
        "rbridge.reason": decision.reason,
        "rbridge.rule": decision.rule or "",
        "rbridge.classification": decision.classification or "",
        "rbridge.policy_revision": decision.revision,
    }
    for applied in decision.transforms:
        if applied.places:
            key = f"rbridge.transforms.{applied.action}"
            attributes[key] = int(attributes.get(key, 0)) + applied.places
    return attributes


def _trace_inbound(envelope: Envelope, outcome: Delivery | Refused) -> None:
    """A reply's re-identification (or a cloud request's admission), child of the cloud's span;
    a delivery carries its context on to the local agent."""
    parent = {"traceparent": envelope.traceparent} if envelope.traceparent else envelope.headers
    if not tracing.sampled(parent):
        return  # a hop continues a recorded trace, it never starts one
    if isinstance(outcome, Refused):
        done = tracing.start("rbridge.inbound", parent, kind=SpanKind.CONSUMER)
        tracing.end(done, outcome.reject.code)
        return
    name = "rbridge.reidentify" if outcome.kind == "reply" else "rbridge.inbound"
    attributes = {"rbridge.rule": outcome.rule or "", "rbridge.reidentified": outcome.reidentified}
    done = tracing.start(name, parent, kind=SpanKind.CONSUMER, attributes=attributes)
    tracing.end(done)
    outcome.headers.pop("tracestate", None)
    tracing.inject(outcome.headers, done)


def _retry_delay(reject: Reject, message: Pulled) -> float:
    if reject.code == LINK_LOST:
        return 0.5
    try:
        attempt = message.metadata.num_delivered or 1
    except NotJSMessageError:
        attempt = 1
    return float(min(0.5 * 2 ** (attempt - 1), 5.0))


def _check_headers(envelope: Envelope) -> None:
    """Headers from the cloud are checked as an agent's are: one NATS could not carry (or that
    would break a header line) refuses that envelope alone, never the batch around it."""
    problem = header_problem(envelope.headers)
    if problem is not None:
        raise Refused(Reject(RejectCode.BAD_HEADER, problem), RejectCode.BAD_HEADER)
