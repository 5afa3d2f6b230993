"""Settings of ``rbridge cloud``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from bridge.link.pki import DEFAULT_TRUST_DOMAIN
from bridge.link.settings import LinkSettings
from bridge.policy.detectors import BUILTIN_DETECTORS
from bridge.policy.subjects import subject_error
from bridge.runtime.config import (
    NatsSection,
    RuntimeSettings,
    Section,
    StreamSection,
    TLSSection,
    TracingSection,
)


class SiteSection(Section):
    capabilities: list[str] = Field(min_length=1)

    @field_validator("capabilities")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if (problem := subject_error(pattern, pattern=True)) is not None:
                raise ValueError(f"bad capability pattern {pattern!r}: {problem}")
        return patterns


class LeakGuardSection(Section):
    refuse: list[str] = Field(default_factory=lambda: list(BUILTIN_DETECTORS))
    permit: dict[str, list[str]] = Field(
        default_factory=dict, description="capability pattern -> classes allowed"
    )

    @field_validator("refuse")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        _known_detectors(names)
        return names

    @field_validator("permit")
    @classmethod
    def _permits(cls, permits: dict[str, list[str]]) -> dict[str, list[str]]:
        for pattern, names in permits.items():
            problem = subject_error(pattern, pattern=True)
            if problem is not None:
                raise ValueError(f"bad capability pattern {pattern!r}: {problem}")
            _known_detectors(names)
        return permits


def _known_detectors(names: list[str]) -> None:
    unknown = sorted(set(names) - set(BUILTIN_DETECTORS))
    if unknown:
        raise ValueError(f"unknown detectors {unknown} (known: {', '.join(BUILTIN_DETECTORS)})")


class GatewayLinkSection(Section):
    """How the gateway shares itself between sites."""

    window: int = Field(
        4096, ge=1, le=65_536,
        description="Envelopes a site's stream may have unanswered per direction",
    )  # fmt: skip
    site_buffer_bytes: int = Field(
        64 << 20, ge=1 << 20,
        description="Payload bytes of one site's envelopes held unstored before its stream is "
        "no longer read (the edge is held back); with the window, bounds a site's memory here",
    )  # fmt: skip
    turn_envelopes: int = Field(
        64, ge=1, le=4096,
        description="Envelopes stored from one stream per turn; streams take turns in order, "
        "so a busy site cannot keep a quiet one waiting for more than a turn",
    )  # fmt: skip
    concurrent_turns: int = Field(4, ge=1, le=64, description="Turns stored at once")
    busy_share: float = Field(
        0.5, gt=0, le=1,
        description="While other sites send too, the most of the gateway's time one site's "
        "stream may take (1: no limit); a site alone takes all of it",
    )  # fmt: skip

    def settings(self) -> LinkSettings:
        return LinkSettings(
            window=self.window,
            max_batch=min(LinkSettings().max_batch, self.window),
            site_buffer_bytes=self.site_buffer_bytes,
            turn_envelopes=self.turn_envelopes,
            store_slots=self.concurrent_turns,
            busy_share=self.busy_share,
        )


class CloudStreams(Section):
    inbound: StreamSection = Field(
        StreamSection(),
        description="RB_IN: redacted requests until every cloud agent consumer of their "
        "capability has acked them (held for a capability with no consumer yet)",
    )
    replies: StreamSection = Field(
        StreamSection(), description="RB_REPLY: replies until forwarded to their site"
    )


class CloudSettings(RuntimeSettings):
    name: str | None = None
    listen: str = "127.0.0.1:7443"
    http: str = "127.0.0.1:9465"
    health_listen: str | None = Field(
        None,
        description="Also serve the gRPC health service alone, without TLS, here (for probes).",
    )
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    tls: TLSSection
    crl: Path | None = None
    deny_list: Path | None = None
    sites: dict[str, SiteSection] = Field(min_length=1)
    nats: NatsSection = NatsSection()
    min_policy_revision: int = Field(0, ge=0)
    duplicate_window_seconds: int = Field(86_400, ge=1)
    leak_guard: LeakGuardSection = LeakGuardSection()
    streams: CloudStreams = CloudStreams()
    link: GatewayLinkSection = GatewayLinkSection()
    grace_seconds: float = Field(10.0, ge=0)
    log_level: str = "info"
    tracing: TracingSection = TracingSection()
