"""Replies from cloud agents to a site: from ``RB_REPLY`` over that site's link, acked after the edge.

Cloud agents publish to ``rb.reply.<site>`` with the ``Rb-Reply`` token they received, or, for a
request the cloud starts, with ``Rb-To`` naming the local subject (the site's inbound rules decide
whether it is delivered). For each
site with an open stream on this gateway, a pull consumer shared by all gateway replicas
(``reply-<site>``) takes the replies and sends them down the link; each is acked in JetStream
only when the edge acked it, and stays in the stream while the site is offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from bridge import tracing
from bridge.contract import (
    HEADER_CAPABILITY,
    HEADER_MSG_ID,
    HEADER_REPLY_TOKEN,
    HEADER_TO,
    STREAM_REPLY,
    HeaderConflict,
    rb_headers,
    reply_subject,
)
from bridge.link import Envelope, LinkGateway, NotConnected, Reject
from bridge.link.envelope import RETRIABLE
from bridge.link.outbox import DuplicateInFlight
from bridge.natsconsume import PullConsumer, keep_in_progress
from bridge.runtime.headers import header_problem, passthrough
from bridge.runtime.settlement import Settlement
from bridge.supervise import frames
from bridge.tracing import SpanKind

log = logging.getLogger("rbridge.cloud.replies")


class ReplyForwarder:
    def __init__(
        self,
        nc: Client,
        *,
        batch: int = 64,
        ack_wait: float = 5.0,
        count: Callable[[str], None] = lambda _result: None,
    ) -> None:
        self.nc = nc
        self.count = count  # one call per reply settled: forwarded, retried or refused
        self.js = nc.jetstream()
        self.batch = batch
        # Short, so a dead gateway's replies come back soon; the live one reports the replies
        # it holds (sent to the site, not yet acked by it) as in progress.
        self.ack_wait = ack_wait
        self.gateway: LinkGateway | None = None
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._consumers: dict[str, PullConsumer] = {}
        self._failures: dict[str, int] = {}
        self.down: dict[str, str] = {}  # site -> why its pump is not running
        self._stopping = False
        self.forwarded = 0
        self.refused = 0
        # Acks, naks and terms of forwarded replies, sent by one task (see run_settlement).
        self.settlement = Settlement()

    async def run_settlement(self) -> None:
        """Settle forwarded replies as the site answers them (a supervised loop of the gateway)."""
        await self.settlement.run()

    async def keep_in_progress(self) -> None:
        """Report the replies held for the sites in progress (a supervised loop of the gateway)."""
        await keep_in_progress(self.nc, self._held, every=self.ack_wait / 3)

    def _held(self) -> Iterator[Msg]:
        if self.gateway is not None:
            yield from self.gateway.held()

    def sessions_changed(self, site: str) -> None:
        if self._stopping or self.gateway is None:
            return
        if not self.gateway.connected(site) and site in self._consumers:
            self._consumers[site].close()  # the pump, waiting for replies, ends
        if not self.gateway.connected(site):
            self.down.pop(site, None)  # nothing to forward to while the site is away
        if self.gateway.connected(site) and (site not in self._pumps or self._pumps[site].done()):
            self.down.pop(site, None)
            task = asyncio.create_task(self._pump(site), name=f"replies-{site}")
            # A pump that was on its way out when the site came back must not leave it unserved.
            task.add_done_callback(functools.partial(self._pump_ended, site))
            self._pumps[site] = task

    def _pump_ended(self, site: str, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is None or self._stopping:
            self._failures.pop(site, None)
            self.sessions_changed(site)
            return
        # A pump that failed (NATS gone, the consumer deleted) is started again after a pause
        # that grows while it keeps failing; meanwhile /readyz says so.
        failures = self._failures[site] = self._failures.get(site, 0) + 1
        pause = min(0.5 * 2 ** (failures - 1), 30.0)
        self.down[site] = type(error).__name__
        log.error(
            "reply pump for site %s stopped (%s, failure %d in a row) at %s; again in %.1f s",
            site, type(error).__name__, failures, " < ".join(reversed(frames(error))), pause,
        )  # fmt: skip
        asyncio.get_running_loop().call_later(pause, self.sessions_changed, site)

    def not_running(self) -> list[str]:
        return [
            f"reply pump for site {site} is not running (failed: {error})"
            for site, error in sorted(self.down.items())
        ]

    async def stop(self) -> None:
        self._stopping = True
        for consumer in self._consumers.values():
            consumer.close()
        for task in self._pumps.values():
            task.cancel()
        await asyncio.gather(*self._pumps.values(), return_exceptions=True)
        await self.settlement.flush()

    def on_result(self, token: Any, envelope: Envelope, reject: Reject | None) -> None:
        message: Msg = token
        if reject is None:
            self.forwarded += 1
            self.count("forwarded")
            self.settlement.ack(message)
        elif reject.code in RETRIABLE:
            self.count("retried")
            self.settlement.nak(message, delay=1)
        else:
            self.refused += 1
            self.count("refused")
            log.warning(
                "site refused a reply: %s",
                reject.code,
                extra={"msg_id": envelope.id, "code": reject.code},
            )
            self.settlement.term(message)

    def consumer_config(self, site: str) -> api.ConsumerConfig:
        """The site's durable on RB_REPLY: it keeps the site's replies until they are forwarded."""
        return api.ConsumerConfig(
            durable_name=f"reply-{site}",
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_ack_pending=1024,
            filter_subject=reply_subject(site),
        )

    async def _pump(self, site: str) -> None:
        """The site's replies as they arrive (no polling), while it has a stream here."""
        assert self.gateway is not None
        config = self.consumer_config(site)
        durable = config.durable_name
        assert durable is not None
        await self.js.add_consumer(STREAM_REPLY, config=config)
        consumer = PullConsumer(self.nc, STREAM_REPLY, durable, batch=self.batch)
        await consumer.start()
        self._consumers[site] = consumer
        try:
            while not self._stopping and self.gateway.connected(site):
                for message in await consumer.take():
                    await self._forward(site, message)
        finally:
            if self._consumers.get(site) is consumer:
                del self._consumers[site]
            await consumer.stop()
            for message in consumer.release():
                with contextlib.suppress(Exception):
                    await message.nak(delay=1)

    async def _forward(self, site: str, message: Msg) -> None:
        span = None
        if tracing.sampled(message.headers):  # child of the cloud agent's reply, if recorded
            attributes = {"rbridge.site": site}
            span = tracing.start(
                "rbridge.reply.forward",
                message.headers,
                kind=SpanKind.PRODUCER,
                attributes=attributes,
            )
        try:
            await self._forward_traced(site, message, tracing.traceparent(span))
        finally:
            tracing.end(span)

    async def _forward_traced(self, site: str, message: Msg, traceparent: str) -> None:
        assert self.gateway is not None
        envelope = self._envelope(message, traceparent)
        if envelope is None:
            await message.term()
            return
        try:
            await self.gateway.send(site, envelope, token=message)
        except NotConnected:
            await message.nak(delay=1)
        except DuplicateInFlight:
            # Redelivered while the first copy is still on its way: that copy's answer settles
            # the message.
            return
        except Exception as error:
            # Never leave a taken reply unsettled (it would wait out ack_wait).
            log.warning("could not forward a reply: %s", type(error).__name__)
            await message.nak(delay=1)

    def _envelope(self, message: Msg, traceparent: str = "") -> Envelope | None:
        headers = message.headers or {}
        problem = header_problem(headers)
        if problem is not None:
            self.refused += 1
            log.warning("dropped a malformed reply: %s", problem)
            return None
        try:
            rb = rb_headers(headers)  # Rb-* names in any spelling, as on the edge
        except HeaderConflict as conflict:
            self.refused += 1
            log.warning("dropped a malformed reply: %s", conflict)
            return None
        token = rb.get(HEADER_REPLY_TOKEN.lower(), "")
        sequence = message.metadata.sequence.stream
        envelope_id = headers.get(HEADER_MSG_ID) or f"reply-{sequence}"
        # A reply names its route by token; a cloud-initiated request names its local subject.
        # Either way, the site's policy decides.
        target = rb.get(HEADER_CAPABILITY.lower(), "") if token else rb.get(HEADER_TO.lower(), "")
        return Envelope(
            # The stream sequence makes each stored reply distinct: the edge tells a redelivery
            # of one reply (same id) from another reply carrying the same token.
            id=f"reply/{envelope_id}@{sequence}",
            capability=target,
            payload=message.data,
            reply_token=token,
            headers=passthrough(headers),
            traceparent=traceparent or headers.get("traceparent", "")[:128],
        )
