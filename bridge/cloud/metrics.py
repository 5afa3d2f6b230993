"""The cloud gateway's Prometheus metrics (one registry per process; stages never import this)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bridge import __version__
from bridge.link.gateway import SiteLoad


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
        self._store_seconds = Histogram(
            "rbridge_store_seconds",
            "Time to store one batch of envelopes in RB_IN (until JetStream acknowledged it)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self._streams_refused = Counter(
            "rbridge_streams_refused",
            "Site link streams refused, by code (unknown site, revoked, bad certificate, no hello)",
            ["code"],
            registry=self.registry,
        )
        Info("rbridge_build", "Version of the gateway", registry=self.registry).info(
            {"version": __version__}
        )

    def watch_sites(self, loads: Callable[[], Sequence[SiteLoad]]) -> None:
        """Report each connected site's streams, window and holdings, read at scrape time."""
        self.registry.register(_SiteLoads(loads))

    def stored(self, site: str, count: int) -> None:
        self._envelopes.labels(site, "outbound", "stored").inc(count)

    def refused(self, site: str, code: str) -> None:
        self._envelopes.labels(site, "outbound", code).inc()

    def leak(self, site: str, detector: str) -> None:
        self._leaks.labels(site, detector).inc()

    def store_time(self, seconds: float) -> None:
        self._store_seconds.observe(seconds)

    def stream_refused(self, code: str) -> None:
        self._streams_refused.labels(code).inc()


class _SiteLoads(Collector):
    """Per connected site, what it holds at this gateway (nothing is counted per message)."""

    def __init__(self, loads: Callable[[], Sequence[SiteLoad]]) -> None:
        self._loads = loads

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        streams, window, held, held_bytes = self._families()
        for load in self._loads():
            streams.add_metric([load.site], load.streams)
            window.add_metric([load.site], load.window)
            held.add_metric([load.site, "inbound"], load.inbound)
            held.add_metric([load.site, "reply"], load.replies)
            held_bytes.add_metric([load.site, "inbound"], load.inbound_bytes)
            held_bytes.add_metric([load.site, "reply"], load.reply_bytes)
        yield from (streams, window, held, held_bytes)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "rbridge_site_streams", "Open link streams per site", labels=["site"]
            ),
            GaugeMetricFamily(
                "rbridge_site_window",
                "Envelopes a site may have unanswered per direction (over its streams)",
                labels=["site"],
            ),
            GaugeMetricFamily(
                "rbridge_site_held",
                "Envelopes a site holds at this gateway: inbound read and not yet stored, "
                "replies sent or queued and not yet answered",
                labels=["site", "direction"],
            ),
            GaugeMetricFamily(
                "rbridge_site_held_bytes",
                "Payload bytes of rbridge_site_held (inbound stops being read at "
                "link.site_buffer_bytes)",
                labels=["site", "direction"],
            ),
        )
