"""``rbridge cloud``: the gateway process, from configuration to clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bridge import tracing
from bridge.cloud.config import CloudSettings
from bridge.cloud.holds import Holds
from bridge.cloud.metrics import CloudMetrics
from bridge.cloud.replies import ReplyForwarder
from bridge.cloud.store import CloudGuard, CloudStore
from bridge.contract import INBOUND_PREFIX, REPLY_PREFIX, STREAM_IN, STREAM_REPLY
from bridge.link import LinkGateway, Revocations, ServerTLS, TLSFiles
from bridge.natsconnect import replicas_for
from bridge.runtime import heap, systemd
from bridge.runtime.http import StatusServer
from bridge.runtime.natsconn import connect
from bridge.runtime.publisher import StreamPublisher
from bridge.runtime.streams import StreamSpec, ensure_stream, warn_of_other_consumers
from bridge.runtime.streamwatch import StreamWatch
from bridge.supervise import Supervisor

log = logging.getLogger("rbridge.cloud")


class CloudGateway:
    """The whole cloud side in one object, so tests can run it in-process."""

    def __init__(self, settings: CloudSettings) -> None:
        self.settings = settings
        self.metrics = CloudMetrics()
        self.gateway: LinkGateway | None = None
        self.status: StatusServer | None = None
        self.port = 0
        self.http_port = 0
        self._stopped = asyncio.Event()
        self._warned: set[str] = set()  # edge instances warned about a too-old policy revision
        self.loops = Supervisor()

    async def start(self) -> None:
        """Start everything, or (on an error) close what was opened and raise it."""
        try:
            await self._start()
        except BaseException:
            await self._abandon()
            raise

    async def _start(self) -> None:
        settings = self.settings
        traces = tracing.configure(
            "rbridge-gateway", settings.tracing.endpoint, settings.tracing.sample_ratio
        )
        if traces is not None:
            log.info("traces go to %s (OTLP)", traces)
        self.nc = await connect(
            settings.nats.address,
            credentials=settings.nats.credentials,
            nkey_seed=settings.nats.nkey_seed,
            name="rbridge-cloud",
        )
        js = self.nc.jetstream()
        replicas = replicas_for(self.nc, settings.nats.replicas)
        self.replies = ReplyForwarder(
            self.nc, count=lambda result: self.metrics.replies.labels(result).inc()
        )
        # Interest retention: a request is removed once every agent consumer of its capability
        # acked it (held meanwhile for a capability nobody consumes yet), a reply once forwarded
        # to its site (each configured site has its durable from the start).
        self.holds = Holds(js)
        await self.holds.hold_waiting()
        await ensure_stream(
            js,
            StreamSpec(
                STREAM_IN,
                [f"{INBOUND_PREFIX}>"],
                interest=True,
                bounds=settings.streams.inbound.bounds(),
                duplicate_window=settings.duplicate_window_seconds,
                replicas=replicas,
            ),
        )
        reply_consumers = [self.replies.consumer_config(site) for site in settings.sites]
        await ensure_stream(
            js,
            StreamSpec(
                STREAM_REPLY,
                [f"{REPLY_PREFIX}>"],
                interest=True,
                bounds=settings.streams.replies.bounds(),
                duplicate_window=settings.duplicate_window_seconds,
                replicas=replicas,
            ),
            reply_consumers,
        )
        await warn_of_other_consumers(
            js, STREAM_REPLY, {config.durable_name or "" for config in reply_consumers}
        )
        self.watch = StreamWatch(js, [STREAM_IN, STREAM_REPLY], self.metrics.registry)
        self.loops.spawn("holds", self.holds.run)
        self.loops.spawn("stream-watch", self.watch.run)
        self.publisher = StreamPublisher(self.nc)
        await self.publisher.start()
        tls = ServerTLS(TLSFiles(settings.tls.cert, settings.tls.key, settings.tls.ca))
        revocations = Revocations(settings.tls.ca.read_bytes(), settings.crl, settings.deny_list)
        store = CloudStore(
            self.publisher,
            CloudGuard.of(settings.leak_guard.refuse, settings.leak_guard.permit),
            min_revision=settings.min_policy_revision,
            metrics=self.metrics,
            interest=self.holds,
        )
        self.gateway = LinkGateway(
            tls=tls,
            revocations=revocations,
            trust_domain=settings.trust_domain,
            sites={name: site.capabilities for name, site in settings.sites.items()},
            handler=store,
            settings=settings.link.settings(),
            on_reply_result=self.replies.on_result,
            on_sessions_changed=self._sessions_changed,
            on_refused=self.metrics.stream_refused,
            name=settings.name,
        )
        self.replies.gateway = self.gateway
        self.metrics.watch_sites(self.gateway.loads)
        self.loops.spawn("replies-in-progress", self.replies.keep_in_progress)
        self.loops.spawn("replies-settle", self.replies.run_settlement)
        self.port = await self.gateway.start(settings.listen, settings.health_listen)
        self.status = StatusServer.at(
            settings.http, self.metrics.registry, self.not_ready, self.watch.notes
        )
        self.http_port = await self.status.start()
        log.info(
            "cloud gateway ready: link on port %d, status on port %d", self.port, self.http_port
        )

    def _sessions_changed(self, site: str) -> None:
        assert self.gateway is not None
        self.metrics.sessions.set(sum(len(group) for group in self.gateway.sessions.values()))
        minimum = self.settings.min_policy_revision
        for session in self.gateway.sessions.get(site, ()):
            if session.revision < minimum and session.instance not in self._warned:
                self._warned.add(session.instance)
                log.warning(
                    "site %s instance %s runs policy revision %d, below this gateway's minimum "
                    "%d: every message it sends will be refused (revision-refused)",
                    site, session.instance, session.revision, minimum,
                )  # fmt: skip
        self.replies.sessions_changed(site)

    def not_ready(self) -> list[str]:
        missing = []
        if not self.nc.is_connected:
            missing.append("NATS not connected")
        if self.gateway is None or self.port == 0:
            missing.append("link not listening")
        missing.extend(self.loops.not_running())
        missing.extend(self.replies.not_running())
        return missing

    async def stop(self) -> None:
        self.loops.closing()
        grace = self.settings.grace_seconds
        if self.gateway is not None:
            await self.gateway.stop(grace)
        await self.replies.stop()
        await self.loops.stop()
        await self.publisher.stop()
        if self.status is not None:
            await self.status.stop()
        with contextlib.suppress(Exception):
            await self.nc.drain()
        self._stopped.set()

    async def _abandon(self) -> None:
        """What a failed start opened, closed."""
        await self.loops.stop()
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                await self.gateway.stop(0)
        if self.status is not None:
            with contextlib.suppress(Exception):
                await self.status.stop()
        if getattr(self, "nc", None) is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()


async def run(settings: CloudSettings) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly within the grace period."""
    cloud = CloudGateway(settings)
    await cloud.start()
    heap.settle()  # started: what it holds now is never garbage
    # A JSON log line like every other (the journal and log shippers read one format).
    log.info(
        "rbridge cloud: link on %s:%d, status on port %d",
        settings.listen.rpartition(":")[0], cloud.port, cloud.http_port,
    )  # fmt: skip
    try:
        await systemd.serve_until_signalled(cloud.stop, lambda: f"link on port {cloud.port}")
    finally:
        tracing.shutdown()  # export what is pending
