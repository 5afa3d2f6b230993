"""Envelopes and their outcomes, as the runtimes see them (the wire types stay in bridge.link)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from bridge.link.v1 import link_pb2 as pb


@dataclass(slots=True)
class Envelope:
    """One message crossing the link. ``id`` is stable across resends."""

    id: str
    capability: str
    payload: bytes
    classification: str = ""
    rule: str = ""
    policy_revision: int = 0
    reply_token: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    created_unix_ms: int = 0
    traceparent: str = ""

    def _fill(self, wire: pb.Envelope) -> None:
        wire.id = self.id
        wire.capability = self.capability
        wire.payload = self.payload
        if self.classification:
            wire.classification = self.classification
        if self.rule:
            wire.rule = self.rule
        if self.policy_revision:
            wire.policy_revision = self.policy_revision
        if self.reply_token:
            wire.reply_token = self.reply_token
        if self.created_unix_ms:
            wire.created_unix_ms = self.created_unix_ms
        if self.traceparent:
            wire.traceparent = self.traceparent
        if self.headers:
            wire.headers.update(self.headers)

    @classmethod
    def from_wire(cls, wire: pb.Envelope) -> Envelope:
        return cls(
            wire.id,
            wire.capability,
            wire.payload,
            wire.classification,
            wire.rule,
            wire.policy_revision,
            wire.reply_token,
            dict(wire.headers) if wire.headers else {},
            wire.created_unix_ms,
            wire.traceparent,
        )


def batch_into(target: pb.Batch, envelopes: list[Envelope]) -> None:
    """Write ``envelopes`` straight into a frame's batch (building them apart and adding them
    would copy every message once more)."""
    add = target.envelopes.add
    for envelope in envelopes:
        envelope._fill(add())


class Reject(NamedTuple):
    """The receiving side's refusal of one envelope: a code for programs, a reason for people."""

    code: str
    reason: str


# Reject codes used by the link itself.
LINK_LOST = "link-lost"
CAPABILITY_NOT_ALLOWED = "capability-not-allowed"
TOO_LARGE = "too-large"
MALFORMED = "malformed"
HANDLER_FAILED = "handler-failed"
STORE_FAILED = "store-failed"
STORE_REFUSED = "store-refused"  # JetStream refused this message for good (too large, say)
#: Refusals that say "not now" rather than "never": the sender keeps the message and retries.
RETRIABLE = frozenset({LINK_LOST, HANDLER_FAILED, STORE_FAILED})
