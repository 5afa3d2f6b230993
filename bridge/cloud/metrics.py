"""The cloud gateway's Prometheus metrics (one registry per process; stages never import this)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

from bridge import __version__


class CloudMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._envelopes = Counter(
            "rbridge_envelopes",
            "Envelopes from sites by result",
            ["site", "direction", "result"],
            registry=self.registry,
        )
        self._leaks = Counter(
            "rbridge_leak_guard_hits", "Envelopes the gateway's own leak guard refused, by detector", ["site", "detector"],
            registry=self.registry,
        )  # fmt: skip
        self.sessions = Gauge("rbridge_link_sessions", "Open site streams", registry=self.registry)
        self.replies = Counter(
            "rbridge_replies",
            "Replies settled with their sites: forwarded, retried (not taken this time), refused",
            ["result"],
            registry=self.registry,
        )
        Info("rbridge_build", "Version of the gateway", registry=self.registry).info(
            {"version": __version__}
        )

    def stored(self, site: str, count: int) -> None:
        self._envelopes.labels(site, "outbound", "stored").inc(count)

    def refused(self, site: str, code: str) -> None:
        self._envelopes.labels(site, "outbound", code).inc()

    def leak(self, site: str, detector: str) -> None:
        self._leaks.labels(site, detector).inc()
