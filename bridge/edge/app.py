"""``rbridge edge``: the edge bridge process, from configuration to clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator

from nats.aio.msg import Msg
from nats.js import api

from bridge import tracing
from bridge.audit import AuditTrail
from bridge.contract import OUTBOUND_PREFIX, REPLIES_AGAIN, STREAM_OUT, STREAM_QUARANTINE
from bridge.edge.bridge import QUARANTINE_PREFIX, EdgeBridge
from bridge.edge.config import EdgeSettings
from bridge.edge.delivered import Resender
from bridge.edge.metrics import EdgeMetrics
from bridge.edge.policy_source import PolicySource
from bridge.edge.replyroutes import ReplySubjects
from bridge.edge.tokens import JetStreamSpentTokens, ReplyTokens
from bridge.errors import RbridgeError
from bridge.keys import FileKeyStore
from bridge.link import ClientTLS, EdgeLink, Hello, LinkSettings, TLSFiles
from bridge.natsconnect import replicas_for
from bridge.natsconsume import PullConsumer, keep_in_progress
from bridge.policy import ResidencyPolicy
from bridge.runtime import heap, systemd
from bridge.runtime.http import StatusServer
from bridge.runtime.natsconn import connect
from bridge.runtime.publisher import NatsBus, StreamPublisher
from bridge.runtime.streams import Bounds, StreamSpec, ensure_stream, warn_of_other_consumers
from bridge.runtime.streamwatch import StreamWatch
from bridge.supervise import Supervisor

log = logging.getLogger("rbridge.edge")
#: Warn about the site certificate's expiry from this long before it.
EXPIRY_WARNING_SECONDS = 14 * 86_400


def check_destinations(settings: EdgeSettings, policy: ResidencyPolicy) -> None:
    """Every destination the policy sends to has a gateway, in the jurisdiction the policy says
    (run at start-up and by ``--check-config``, so a check that passes means a start that does)."""
    used = {name for rule in policy.spec.rules for name in rule.destinations}
    missing = sorted(used - set(settings.destinations))
    if missing:
        raise RbridgeError(
            f"the policy sends to destinations with no gateway configured: {', '.join(missing)} "
            "(add them under destinations: in the edge settings)"
        )
    for name, destination in settings.destinations.items():
        declared = policy.spec.destinations.get(name)
        if (
            declared is not None
            and destination.jurisdiction
            and destination.jurisdiction != declared.jurisdiction
        ):
            raise RbridgeError(
                f"destination {name!r} is configured in {destination.jurisdiction} but the policy puts it in {declared.jurisdiction}"
            )


class EdgeApp:
    """The whole edge side in one object, so tests can run it in-process."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.instance = settings.instance or f"{settings.site}-{uuid.uuid4().hex[:6]}"
        self.metrics = EdgeMetrics()
        self.links: dict[str, EdgeLink] = {}
        self.status: StatusServer | None = None
        self.http_port = 0
        self.loops = Supervisor()
        self._stopping = asyncio.Event()
        self._connects_counted: dict[str, int] = {}
        self._expiry_warned: dict[str, float] = {}
        self.pulled = 0
        self.consumer: PullConsumer | None = None
        self.resender: Resender | None = None

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
            "rbridge-edge", settings.tracing.endpoint, settings.tracing.sample_ratio
        )
        if traces is not None:
            log.info("traces go to %s (OTLP)", traces)
        keys = FileKeyStore(settings.keys_dir)
        self.policy = PolicySource(
            settings.policy.path,
            keys,
            name=settings.policy.name,
            require_signature=settings.policy.require_signature,
            pubkey=settings.policy.pubkey,
            state_dir=settings.state_directory,
        )
        loaded = self.policy.load()
        check_destinations(settings, self.policy.engine.policy)
        self.audit = AuditTrail(
            settings.audit.dir, max_bytes=settings.audit.max_bytes, fsync=settings.audit.fsync
        )
        tokens = ReplyTokens(
            keys.current(settings.replies.key), settings.site, settings.replies.ttl_seconds
        )
        self.nc = await connect(
            settings.nats.address,
            credentials=settings.nats.credentials,
            nkey_seed=settings.nats.nkey_seed,
            name=f"rbridge-edge-{self.instance}",
            on_lost=self._nats_lost,
            on_back=self._nats_back,
        )
        self.js = self.nc.jetstream()
        self.replicas = replicas_for(self.nc, settings.nats.replicas)
        self.publisher = StreamPublisher(self.nc)
        await self.publisher.start()
        # A message is removed from RB_OUT once the cloud has it and the edge acked it; the
        # durable exists before the stream takes interest retention, so nothing is dropped.
        await ensure_stream(self.js, self.outbound_stream, [self._consumer_config()])
        await warn_of_other_consumers(self.js, STREAM_OUT, {settings.consumer.durable})
        self.streams = StreamWatch(self.js, [STREAM_OUT], self.metrics.registry)
        if settings.quarantine.enabled:
            await ensure_stream(
                self.js,
                StreamSpec(
                    STREAM_QUARANTINE,
                    [f"{QUARANTINE_PREFIX}>"],
                    bounds=Bounds(max_age=settings.quarantine.max_age_seconds),
                    replicas=self.replicas,
                ),
            )
        self.bridge = EdgeBridge(
            site=settings.site, nc=NatsBus(self.nc), publisher=self.publisher, policy=self.policy, audit=self.audit, links=self.links,
            tokens=tokens, metrics=self.metrics, quarantine=settings.quarantine.enabled,
            reply_subjects=ReplySubjects(settings.replies.subjects),
            spent=await JetStreamSpentTokens.open(
                self.js, settings.replies.ttl_seconds, self.publisher, self.replicas
            ),
        )  # fmt: skip
        self.resender = self.bridge.resender
        # Agents whose connection came back ask for what was published to them meanwhile.
        await self.nc.subscribe(REPLIES_AGAIN, cb=self.resender.on_again)
        link_settings = LinkSettings(
            window=settings.link.window,
            max_batch=min(settings.link.max_batch, settings.link.window),
            linger=settings.link.linger_ms / 1000,
            keepalive_time=settings.link.keepalive_seconds,
            keepalive_timeout=settings.link.keepalive_seconds,
        )
        tls = TLSFiles(settings.tls.cert, settings.tls.key, settings.tls.ca)
        for name, destination in settings.destinations.items():
            link = EdgeLink(
                destination.address,
                ClientTLS(tls, server_name=destination.server_name),
                Hello(settings.site, f"{self.instance}-{name}", loaded.revision),
                on_result=self.bridge.on_result,
                inbound=self.bridge,
                settings=link_settings,
                standby=destination.standby,
            )
            self.links[name] = link
            await link.start()
        self.metrics.policy_revision.labels(loaded.engine.name).set(loaded.revision)
        self.status = StatusServer.at(
            settings.http, self.metrics.registry, self.not_ready, self.notes
        )
        self.http_port = await self.status.start()
        await self._consume()
        every = settings.consumer.ack_wait_seconds / 3
        self.loops.spawn("pull", self._pull)
        self.loops.spawn("settle", self.bridge.settlement.run)
        self.loops.spawn("watch", self._watch)
        self.loops.spawn("in-progress", lambda: keep_in_progress(self.nc, self._held, every=every))
        self.loops.spawn("stream-watch", self.streams.run)
        log.info("edge bridge %s ready: status on port %d", self.instance, self.http_port)

    def _nats_lost(self) -> None:
        if self.resender is not None:
            self.resender.connection_lost()

    async def _nats_back(self) -> None:
        if self.resender is not None:
            await self.resender.connection_back()

    @property
    def outbound_stream(self) -> StreamSpec:
        return StreamSpec(
            STREAM_OUT,
            [f"{OUTBOUND_PREFIX}>"],
            interest=True,
            bounds=self.settings.streams.outbound.bounds(),
            replicas=self.replicas,
        )

    def _consumer_config(self) -> api.ConsumerConfig:
        """The shared durable on RB_OUT (created, or brought to these settings)."""
        consumer = self.settings.consumer
        return api.ConsumerConfig(
            durable_name=consumer.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=consumer.ack_wait_seconds,
            max_ack_pending=consumer.max_ack_pending,
            filter_subject=f"{OUTBOUND_PREFIX}>",
        )

    def not_ready(self) -> list[str]:
        missing = []
        if not self.nc.is_connected:
            missing.append("NATS not connected")
        if self.policy.current is None:
            missing.append("no policy loaded")
        if not self.audit.healthy:
            missing.append(f"audit trail not writable ({self.audit.last_error})")
        if not any(link.state == "up" for link in self.links.values()):
            missing.append("no link up")
        missing.extend(self.loops.not_running())
        return missing

    async def _consume(self) -> None:
        """Start taking from the shared durable (made again if it is gone)."""
        consumer = self.settings.consumer
        if self.consumer is not None:
            await self.consumer.stop()
            await self.js.add_consumer(STREAM_OUT, config=self._consumer_config())
        self.consumer = PullConsumer(self.nc, STREAM_OUT, consumer.durable, batch=consumer.batch)
        await self.consumer.start()

    async def _pull(self) -> None:
        """Messages as they arrive (no polling), decided and sent on in the batches they come in;
        while no link is up nothing is asked for and what arrives goes back to the stream."""
        if self.consumer is None or self.consumer.lost:
            await self._consume()  # a restart after the consumer was lost
        consumer, batch = self.consumer, self.settings.consumer.batch
        assert consumer is not None
        while not self._stopping.is_set():
            if not any(link.state == "up" for link in self.links.values()):
                # Nothing may leave: leave the backlog in RB_OUT rather than churn through it.
                consumer.pause()
                for message in consumer.release():
                    self.bridge.settlement.nak(message, delay=1.0)
                await asyncio.sleep(0.2)
                continue
            await consumer.resume()
            if not self.audit.healthy:
                # The last write failed; try again at a slow pace (the next append reopens the file).
                await asyncio.sleep(1.0)
            messages = await consumer.take(batch)
            if messages:
                self.pulled += len(messages)
                await self.bridge.process(messages)

    def _held(self) -> Iterator[Msg]:
        """Messages sent on and not yet answered by the cloud."""
        for link in self.links.values():
            for pending in link.outbox.tokens():
                yield pending.message

    async def _watch(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.policy.watch_seconds)
            try:
                if self.reload():  # `systemctl status` shows the revision in force
                    systemd.notify(f"STATUS={self.describe_policy()}")
            except Exception as error:  # the watcher must outlive any one bad policy file
                log.error("policy reload failed: %s", type(error).__name__)
            for name, link in self.links.items():
                self.metrics.link_up.labels(name).set(1 if link.state == "up" else 0)
                if link.state == "up" and link.tls.rotated():
                    link.refresh()  # a rotated certificate is used within one watch cycle
                if link.tls.not_after:
                    self.metrics.certificate_expiry.labels(name).set(link.tls.not_after)
                    self._warn_expiry(name, link.tls.serial, link.tls.not_after)
                counted = self._connects_counted.get(name, 0)
                if link.connects > counted:  # a counter with a sample from the first connect
                    self.metrics.reconnects.labels(name).inc(link.connects - counted)
                    self._connects_counted[name] = link.connects
            self.metrics.in_flight.set(sum(len(link.outbox) for link in self.links.values()))
            with contextlib.suppress(Exception):
                info = await self.js.consumer_info(STREAM_OUT, self.settings.consumer.durable)
                self.metrics.backlog.set(info.num_pending or 0)

    def _warn_expiry(self, destination: str, serial: str, not_after: float) -> None:
        """Once a day per certificate, from 14 days before it expires."""
        left = not_after - time.time()
        if left > EXPIRY_WARNING_SECONDS:
            return
        last = self._expiry_warned.get(serial, 0.0)
        if time.monotonic() - last < 86_400 and last:
            return
        self._expiry_warned[serial] = time.monotonic()
        log.warning(
            "the site certificate (serial %s) used for %s expires in %.1f days; rotate it",
            serial, destination, max(left, 0) / 86_400,
        )  # fmt: skip

    def notes(self) -> list[str]:
        notes = self.streams.notes()
        if self.policy.refused_configured:
            notes.insert(
                0,
                f"the configured policy {self.settings.policy.path} was refused "
                f"({self.policy.refused_configured}); running the last good one",
            )
        return notes

    def describe_policy(self) -> str:
        current = self.policy.current
        if current is None:
            return "no policy loaded"
        described = f"policy {current.engine.name} revision {current.revision}"
        if self.policy.refused_configured:
            described += " (last good; the configured file was refused)"
        return described

    def reload(self, *, force: bool = False) -> bool:
        failures = self.policy.failures
        changed = self.policy.reload(force=force)
        if self.policy.failures > failures:  # counted once per refused file, not per look
            self.metrics.policy_reload_failures.inc()
        if changed and self.policy.current is not None:
            self.metrics.policy_revision.clear()
            self.metrics.policy_revision.labels(self.policy.current.engine.name).set(
                self.policy.current.revision
            )
            for link in self.links.values():
                link.set_policy_revision(self.policy.current.revision)
        return changed

    async def stop(self) -> None:
        """Stop pulling, let in-flight envelopes be answered, settle, close links and NATS."""
        self._stopping.set()
        self.loops.closing()
        grace = self.settings.grace_seconds
        if self.consumer is not None:
            await self.consumer.stop()  # nothing more is taken; the pull task ends
        await self.loops.finish("pull", 2.0)
        await asyncio.gather(*(link.stop(grace) for link in self.links.values()))
        await self.bridge.settlement.flush()
        await self.loops.stop()
        await self.bridge.background.drain()
        await self.publisher.stop()
        if self.status is not None:
            await self.status.stop()
        with contextlib.suppress(Exception):
            await self.nc.drain()
        self.audit.close()

    async def _abandon(self) -> None:
        """What a failed start opened, closed (nothing was taken from RB_OUT yet)."""
        await self.loops.stop()
        with contextlib.suppress(Exception):
            await asyncio.gather(*(link.stop(0) for link in self.links.values()))
        if self.status is not None:
            with contextlib.suppress(Exception):
                await self.status.stop()
        if getattr(self, "nc", None) is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if getattr(self, "audit", None) is not None:
            self.audit.close()


async def run(settings: EdgeSettings) -> None:
    """Run until SIGTERM or SIGINT, reloading the policy on SIGHUP, then stop cleanly."""
    app = EdgeApp(settings)
    await app.start()
    heap.settle()  # started: what it holds now is never garbage
    # A JSON log line like every other (the journal and log shippers read one format).
    log.info("rbridge edge: site %s, status on port %d", settings.site, app.http_port)
    try:
        await systemd.serve_until_signalled(
            app.stop, app.describe_policy, reload=lambda: app.reload(force=True)
        )
    finally:
        tracing.shutdown()  # export what is pending
