"""Settings of ``rbridge edge``."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from bridge.edge.replyroutes import DEFAULT_REPLY_SUBJECTS, ReplySubjects
from bridge.runtime.config import (
    NatsSection,
    RuntimeSettings,
    Section,
    StreamSection,
    TLSSection,
    TracingSection,
)


class ConsumerSection(Section):
    durable: str = "rbridge-edge"
    batch: int = Field(256, ge=1, le=4096)
    ack_wait_seconds: float = Field(
        5.0, ge=1,
        description="a message taken by a bridge that died is redelivered after this long; a "
        "live bridge reports the ones it still holds as in progress every third of it",
    )  # fmt: skip
    max_ack_pending: int = Field(8192, ge=1)
    fetch_wait_ms: float = Field(
        5.0, gt=0, le=5000,
        description="no longer used: messages are delivered as they arrive (kept so that older "
        "files still load)",
    )  # fmt: skip


class PolicySection(Section):
    path: Path = Field(description="a policy file, or a signed bundle (.bundle)")
    name: str | None = Field(
        None, description="which policy of a bundle to run (needed when it holds several)"
    )
    require_signature: bool = False
    pubkey: Path | None = Field(
        None, description="Ed25519 public key that must have signed the bundle"
    )
    watch_seconds: float = Field(2.0, gt=0)


class AuditSection(Section):
    dir: Path
    max_bytes: int = Field(64 << 20, ge=4096)
    fsync: bool = False


class QuarantineSection(Section):
    enabled: bool = False
    max_age_seconds: int = Field(7 * 86_400, ge=60)


class EdgeStreams(Section):
    outbound: StreamSection = Field(
        StreamSection(), description="RB_OUT: messages from local agents until the cloud has them"
    )


class DestinationSection(Section):
    address: str = Field(description="host:port of the gateway")
    standby: list[str] = Field(
        default_factory=list,
        description="host:port of other gateways of this destination, tried in turn when the "
        "one in use cannot be reached or ends the stream",
    )
    server_name: str | None = Field(
        None, description="name to verify on the gateway's certificate, if not the host"
    )
    jurisdiction: str | None = Field(
        None, description="if set, must match the policy's jurisdiction for it"
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _host_port(value)

    @field_validator("standby")
    @classmethod
    def _standby(cls, values: list[str]) -> list[str]:
        return [_host_port(value) for value in values]


def _host_port(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}", value):
        raise ValueError(f"expected host:port, got {value!r}")
    return value


class LinkSection(Section):
    window: int = Field(4096, ge=1)
    max_batch: int = Field(256, ge=1)
    linger_ms: float = Field(2.0, ge=0)
    keepalive_seconds: float = Field(10.0, gt=0)


class RepliesSection(Section):
    key: str = "reply-tokens"
    ttl_seconds: int = Field(86_400, ge=60)
    subjects: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REPLY_SUBJECTS),
        description="where the bridge may publish replies and deny notices for agents "
        "(Rb-Reply-To); never the NATS API ($...) or the bridge's own subjects (rb....)",
    )

    @field_validator("subjects")
    @classmethod
    def _subjects(cls, patterns: list[str]) -> list[str]:
        ReplySubjects(patterns)  # raises ValueError naming the bad pattern
        return patterns


class EdgeSettings(RuntimeSettings):
    site: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,62}$")
    instance: str | None = None
    nats: NatsSection = NatsSection()
    consumer: ConsumerSection = ConsumerSection()
    policy: PolicySection
    keys_dir: Path
    state_dir: Path | None = Field(
        None,
        description="where the edge keeps what must survive a restart (the policy it runs and "
        "the highest signed revision applied); default: the audit directory's parent",
    )
    audit: AuditSection
    quarantine: QuarantineSection = QuarantineSection()
    streams: EdgeStreams = EdgeStreams()
    destinations: dict[str, DestinationSection] = Field(min_length=1)
    tls: TLSSection
    link: LinkSection = LinkSection()
    replies: RepliesSection = RepliesSection()
    http: str = "127.0.0.1:9464"
    grace_seconds: float = Field(10.0, ge=0)
    log_level: str = "info"
    tracing: TracingSection = TracingSection()

    @property
    def state_directory(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.audit.dir.parent
