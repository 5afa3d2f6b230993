"""The edge bridge's Prometheus metrics (one registry per process; stages never import this)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from bridge import __version__


class EdgeMetrics:
    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry()
        self.messages = Counter(
            "rbridge_messages",
            "Messages decided, by direction, decision and rule",
            ["direction", "decision", "rule"],
            registry=registry,
        )
        self.transforms = Counter(
            "rbridge_transforms", "Fields transformed, by action", ["action"], registry=registry
        )
        self.leak_hits = Counter(
            "rbridge_leak_guard_hits",
            "Denies by the leak guard, by detector",
            ["detector"],
            registry=registry,
        )
        self.link_up = Gauge(
            "rbridge_link_up",
            "1 when the link to a destination is up",
            ["destination"],
            registry=registry,
        )
        self.reconnects = Counter(
            "rbridge_link_connects",
            "Link connections made, by destination",
            ["destination"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "rbridge_in_flight", "Envelopes sent and not yet answered", registry=registry
        )
        self.waiting = Counter(
            "rbridge_deferred",
            "Messages put back because no allowed destination was up",
            registry=registry,
        )
        self.certificate_expiry = Gauge(
            "rbridge_tls_certificate_expiry_timestamp_seconds",
            "When the site certificate used for a destination expires (unix time)",
            ["destination"],
            registry=registry,
        )
        self.reply_routes_refused = Counter(
            "rbridge_reply_routes_refused",
            "Rb-Reply-To subjects the bridge would not publish on, by reason",
            ["reason"],
            registry=registry,
        )
        self.reply_tokens_replayed = Counter(
            "rbridge_reply_tokens_replayed",
            "Replies refused because another reply had already used their token",
            registry=registry,
        )
        self.sent_again = Counter(
            "rbridge_edge_sent_again",
            "Replies, deny notices and cloud requests published again because they may have been "
            "lost: why=reconnected (the edge's NATS connection came back), why=asked (an agent "
            "asked on rb.replies.again)",
            ["why"],
            registry=registry,
        )
        self.again_requests_refused = Counter(
            "rbridge_edge_again_requests_refused",
            "rb.replies.again requests that were not a JSON list of reply subjects",
            registry=registry,
        )
        self.cloud_rejects = Counter(
            "rbridge_cloud_rejects",
            "Envelopes the cloud refused, by code",
            ["code"],
            registry=registry,
        )
        self.forward_seconds = Histogram(
            "rbridge_forward_seconds",
            "From pulling a message to the cloud's ack",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.policy_revision = Gauge(
            "rbridge_policy_revision",
            "Revision of the policy in force",
            ["policy"],
            registry=registry,
        )
        self.policy_reload_failures = Counter(
            "rbridge_policy_reload_failures", "New policies refused", registry=registry
        )
        self.audit_errors = Counter(
            "rbridge_audit_write_errors", "Failed audit writes", registry=registry
        )
        self.backlog = Gauge(
            "rbridge_backlog", "Messages waiting in RB_OUT for this consumer", registry=registry
        )
        Info("rbridge_build", "Version of the edge bridge", registry=registry).info(
            {"version": __version__}
        )
