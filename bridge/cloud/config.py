"""Settings of ``rbridge cloud``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from bridge.link.pki import DEFAULT_TRUST_DOMAIN
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
    grace_seconds: float = Field(10.0, ge=0)
    log_level: str = "info"
    tracing: TracingSection = TracingSection()
