"""Envelopes and their outcomes, as the runtimes see them (the wire types stay in bridge.link)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
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


class RejectCode(StrEnum):
    """Every code a side of the link may refuse an envelope with: one definition each.

    Codes cross the wire as their text (a ``StrEnum`` is a ``str``), so an older peer's code
    compares equal; ``retriable`` says whether the sender keeps the message and tries again.
    """

    LINK_LOST = "link-lost"  # the stream ended before the answer
    CAPABILITY_NOT_ALLOWED = "capability-not-allowed"  # the site may not send to it
    TOO_LARGE = "too-large"
    MALFORMED = "malformed"
    HANDLER_FAILED = "handler-failed"  # the receiving side failed this time
    STORE_FAILED = "store-failed"  # the cloud store did not take it this time (full, no leader)
    STORE_REFUSED = "store-refused"  # JetStream refused this message for good (too large, say)
    REVISION_REFUSED = "revision-refused"  # decided by a policy older than the gateway accepts
    BAD_HEADER = "bad-header"
    LEAK_GUARD = "leak-guard"  # the gateway's own leak guard found a class not permitted
    NOT_ACCEPTED = "not-accepted"  # an edge that takes no inbound envelopes
    TOKEN_SPENT = "token-spent"  # a reply token used by another reply already
    BAD_TOKEN = "bad-token"
    INBOUND_NOT_ALLOWED = "inbound-not-allowed"  # no inbound rule allows that local subject
    BAD_PAYLOAD = "bad-payload"

    @property
    def retriable(self) -> bool:
        return self in RETRIABLE


# The names the link has always used, kept for its callers.
LINK_LOST = RejectCode.LINK_LOST
CAPABILITY_NOT_ALLOWED = RejectCode.CAPABILITY_NOT_ALLOWED
TOO_LARGE = RejectCode.TOO_LARGE
MALFORMED = RejectCode.MALFORMED
HANDLER_FAILED = RejectCode.HANDLER_FAILED
STORE_FAILED = RejectCode.STORE_FAILED
STORE_REFUSED = RejectCode.STORE_REFUSED
#: Refusals that say "not now" rather than "never": the sender keeps the message and retries.
RETRIABLE: frozenset[str] = frozenset({LINK_LOST, HANDLER_FAILED, STORE_FAILED})
