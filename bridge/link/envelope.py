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

    def to_wire(self) -> pb.Envelope:
        return pb.Envelope(
            id=self.id,
            capability=self.capability,
            classification=self.classification,
            rule=self.rule,
            policy_revision=self.policy_revision,
            reply_token=self.reply_token,
            headers=self.headers,
            payload=self.payload,
            created_unix_ms=self.created_unix_ms,
            traceparent=self.traceparent,
        )

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
            dict(wire.headers),
            wire.created_unix_ms,
            wire.traceparent,
        )


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
