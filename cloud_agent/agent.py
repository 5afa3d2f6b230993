"""Cloud compute agents: capabilities served from ``RB_IN``, replies through the gateway.

Each capability is consumed from ``rb.in.<capability>`` through one durable JetStream consumer
per agent name and capability, shared by every replica (start another process to scale). A
handler's return value is the reply: it is published to ``rb.reply.<site>`` with the message's
``Rb-Reply`` token, and the message is acked only once JetStream stored the reply. Work is
idempotent by message id: a message delivered again after it was answered (a crash between reply
and ack, a resend) is acked without running the handler twice, across replicas, and its reply
carries a ``Nats-Msg-Id`` derived from the message id, so ``RB_REPLY`` drops a second copy.

A handler that raises is retried (the message is put back with a growing delay) up to
``max_attempts`` deliveries; then the message goes to ``rb.agents.dead.<agent>`` on the cloud
NATS with the error, the site gets a reply carrying only the ``Agent-Error`` header, and the
message is terminated.

Example::

    agent = CloudAgent("parser", nats_url="nats://cloud-nats:4222")

    @agent.capability("docs.parse")
    async def parse(request: CloudRequest) -> dict[str, object]:
        text = request.payload["notes"]
        return {"claimant": request.payload["claimant"], "fields": extract(text)}

    await agent.run()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext, api
from nats.js.errors import Error as JetStreamError
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from bridge import natspublish, tracing
from bridge.agentkit import (
    bucket,
    check_agent_name,
    dead_letter_headers,
    registrar,
    until_signalled,
)
from bridge.contract import (
    HEADER_AGENT_ERROR,
    HEADER_CAPABILITY,
    HEADER_CLASS,
    HEADER_MSG_ID,
    HEADER_POLICY,
    HEADER_RB_MSG_ID,
    HEADER_REPLY_TOKEN,
    HEADER_RULE,
    HEADER_SITE,
    HEADER_TO,
    STREAM_IN,
    dead_letter_subject,
    error_summary,
    inbound_subject,
    reply_subject,
)
from bridge.errors import RbridgeError
from bridge.natsconnect import (
    AGENT_IDENTITY_HINT,
    NatsConnectError,
    NatsIdentity,
    connect,
    replicas_for,
    shown_url,
)
from bridge.natsconsume import PullConsumer, keep_in_progress
from bridge.supervise import Supervisor
from bridge.tracing import SpanKind
from cloud_agent.payload import with_pseudonyms

log = logging.getLogger("cloud_agent")


class CloudAgentUnavailable(RbridgeError):
    """The cloud NATS could not be reached (or refused the credentials) within the timeout."""

    retriable = True


@dataclass(frozen=True, slots=True)
class CloudRequest:
    """A redacted message from a site. ``payload`` marks tokens and digests (see ``payload``)."""

    capability: str
    site: str
    msg_id: str
    classification: str
    rule: str
    policy_revision: str
    payload: Any
    attempt: int
    data: bytes


CapabilityHandler = Callable[[CloudRequest], Awaitable[Mapping[str, Any] | None]]


#: A request taken by an agent that died is redelivered after this long; a live agent reports
#: the requests its handlers are working on as in progress every third of it.
ACK_WAIT_SECONDS = 10.0


@dataclass(slots=True)
class CloudAgentStats:
    handled: int = 0
    duplicates: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0


class CloudAgent:
    """A cloud compute agent on the cloud NATS. See the module docstring for an example."""

    def __init__(
        self,
        name: str,
        *,
        nats_url: str | None = None,
        nkey_seed: str | Path | None = None,
        credentials: str | Path | None = None,
        connect_timeout: float = 10.0,
        max_attempts: int = 3,
        retry_delay: float = 0.5,
        batch: int = 32,
        remember_seconds: float = 86_400,
        connect: Mapping[str, Any] | None = None,
    ) -> None:
        check_agent_name(name)
        self.name = name
        # Given here, else RBRIDGE_AGENT_NATS_URL / _NKEY / _CREDS, else the local default.
        self.identity = NatsIdentity.for_agents(nats_url, nkey_seed, credentials)
        self.nats_url = self.identity.url
        self.connect_timeout = connect_timeout
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.batch = batch
        self.remember_seconds = remember_seconds
        self.stats = CloudAgentStats()
        self._connect_options = dict(connect or {})
        self._handlers: dict[str, CapabilityHandler] = {}
        # One supervised loop per capability: a consumer lost (deleted, a NATS blip during an
        # ack) is logged with where it failed and started again after a growing pause.
        self.loops = Supervisor()
        self._consumers: dict[str, PullConsumer] = {}
        self._stopping = asyncio.Event()
        self._nc: Client | None = None
        self._done: KeyValue | None = None

    def capability(self, name: str) -> Callable[[CapabilityHandler], CapabilityHandler]:
        """Serve ``name`` (a concrete capability such as ``docs.parse``) with the handler."""
        if not name or any(token in ("*", ">", "") for token in name.split(".")):
            raise ValueError(f"capability {name!r} must be a concrete subject")

        return registrar(self._handlers, "capability")(name)

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise RuntimeError("the agent is not started")
        return self._nc

    @property
    def capabilities(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    async def _on_nats_error(self, error: Exception) -> None:
        # Instead of nats-py's default, which logs a traceback for every failed attempt.
        log.warning("NATS %s: %s", shown_url(self.nats_url), error_summary(error))

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        tracing.configure(f"cloud-agent-{self.name}")  # the OTEL_* environment, when it is set
        """Connect (failing with :class:`CloudAgentUnavailable` within ``connect_timeout``)
        and start one consuming task per capability."""
        try:
            self._nc = await connect(
                self.identity,
                name=f"cloud-agent/{self.name}",
                timeout=self.connect_timeout,
                hint=AGENT_IDENTITY_HINT,
                on_error=self._on_nats_error,
                **self._connect_options,
            )
        except NatsConnectError as error:
            raise CloudAgentUnavailable(str(error)) from None
        js = self._nc.jetstream()
        self._done = await _done_bucket(
            js, self.name, self.remember_seconds, replicas_for(self.nc, None)
        )
        for capability in self._handlers:
            self.loops.spawn(
                f"consume-{capability}", functools.partial(self._consume, js, capability)
            )
        log.info("cloud agent %s serving %s", self.name, ", ".join(self._handlers))

    async def stop(self) -> None:
        """Stop fetching, finish the batch in hand, close."""
        self._stopping.set()
        self.loops.closing()
        for consumer in self._consumers.values():
            consumer.close()
        await self.loops.finish_all(timeout=30.0)
        self._consumers.clear()
        if self._nc is not None:
            # Everything fetched was settled above; draining pull subscriptions would only wait.
            with contextlib.suppress(NatsError, OSError, TimeoutError):
                await natspublish.flush(self._nc, timeout=2)
            await self._nc.close()
            self._nc = None

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, then stop."""
        await self.start()
        try:
            await until_signalled(self._stopping)
        finally:
            await self.stop()

    async def __aenter__(self) -> CloudAgent:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # --- cloud-initiated requests ----------------------------------------------------------

    async def request_site(
        self, site: str, subject: str, payload: Mapping[str, Any], *, msg_id: str
    ) -> None:
        """Send a request to on-prem ``subject`` of ``site``; delivered only if the site's
        policy has an inbound rule for it (otherwise the site refuses and audits it)."""
        await self.nc.jetstream().publish(
            reply_subject(site),
            orjson.dumps(payload),
            headers={HEADER_TO: subject, HEADER_MSG_ID: f"request/{msg_id}"},
        )

    # --- consuming -------------------------------------------------------------------------

    async def _consume(self, js: JetStreamContext, capability: str) -> None:
        """Requests as they arrive (standing pull requests, no polling), each handled in its own
        task, at most ``batch`` at a time; while a handler runs its message is reported in
        progress, so a short ``ack_wait`` redelivers only a dead agent's requests."""
        subject = inbound_subject(capability)
        durable = f"{self.name}-{capability.replace('.', '_')}"
        config = api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_SECONDS,
            max_deliver=-1,
            max_ack_pending=1024,
            filter_subject=subject,
        )
        while not self._stopping.is_set():
            try:
                await js.add_consumer(STREAM_IN, config=config)
                break
            except (JetStreamError, NatsError, TimeoutError) as error:
                # The gateway creates RB_IN; an agent started first waits for it.
                log.info("waiting for the %s stream: %s", STREAM_IN, type(error).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1)
        else:
            return
        consumer = PullConsumer(self.nc, STREAM_IN, durable, batch=self.batch)
        self._consumers[capability] = consumer
        await consumer.start()
        handling: dict[asyncio.Task[None], Msg] = {}
        keeper = asyncio.create_task(
            keep_in_progress(self.nc, handling.values, every=ACK_WAIT_SECONDS / 3)
        )
        try:
            while not self._stopping.is_set():
                room = self.batch - len(handling)
                if room <= 0:
                    await asyncio.wait(handling, return_when=asyncio.FIRST_COMPLETED)
                    continue
                for message in await consumer.take(room):
                    task = asyncio.create_task(self._handle(capability, message))
                    handling[task] = message
                    task.add_done_callback(handling.pop)
            if handling:  # finish what is in hand
                await asyncio.wait(handling)
        finally:
            keeper.cancel()
            await consumer.stop()
            for message in consumer.release():
                with contextlib.suppress(NatsError, OSError):
                    await message.nak()

    async def _handle(self, capability: str, message: Msg) -> None:
        headers = message.headers or {}
        attributes = {
            "rbridge.capability": capability,
            "rbridge.site": headers.get(HEADER_SITE, ""),
        }
        with tracing.span(
            f"handle {capability}", headers, kind=SpanKind.CONSUMER, attributes=attributes
        ):
            await self._handle_traced(capability, message, headers)

    async def _handle_traced(
        self, capability: str, message: Msg, headers: Mapping[str, str]
    ) -> None:
        msg_id = headers.get(HEADER_RB_MSG_ID) or headers.get(HEADER_MSG_ID, "")
        key = hashlib.sha256(f"{capability}\0{msg_id}".encode()).hexdigest()[:40]
        if await self._answered(key):
            self.stats.duplicates += 1
            await message.ack()
            return
        attempt = message.metadata.num_delivered
        try:
            payload = with_pseudonyms(orjson.loads(message.data))
            request = CloudRequest(
                capability=capability,
                site=headers.get(HEADER_SITE, ""),
                msg_id=msg_id,
                classification=headers.get(HEADER_CLASS, ""),
                rule=headers.get(HEADER_RULE, ""),
                policy_revision=headers.get(HEADER_POLICY, ""),
                payload=payload,
                attempt=attempt,
                data=message.data,
            )
            result = await self._handlers[capability](request)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await self._failed(capability, message, msg_id, error)
            return
        try:
            if result is not None:
                await self._reply(capability, headers, msg_id, orjson.dumps(result), {})
            await self._remember(key)
        except (NatsError, JetStreamError, TimeoutError) as error:
            log.warning("reply not stored, will retry: %s", type(error).__name__)
            await message.nak(delay=self.retry_delay)
            return
        self.stats.handled += 1
        await message.ack()

    async def _failed(self, capability: str, message: Msg, msg_id: str, error: Exception) -> None:
        self.stats.failed_attempts += 1
        attempt = message.metadata.num_delivered
        log.warning(
            "handler for %s failed (attempt %d of %d): %s",
            capability,
            attempt,
            self.max_attempts,
            type(error).__name__,
            extra={"msg_id": msg_id},
        )
        if attempt < self.max_attempts:
            await message.nak(delay=self.retry_delay * 2 ** (attempt - 1))
            return
        text = error_summary(error)
        headers = message.headers or {}
        dead = dead_letter_headers(
            {},
            error=text,
            subject=message.subject,
            attempts=attempt,
            **{HEADER_RB_MSG_ID: msg_id, HEADER_SITE: headers.get(HEADER_SITE, "")},
        )
        await self.nc.publish(dead_letter_subject(self.name), message.data, headers=dead)
        with contextlib.suppress(NatsError, JetStreamError, TimeoutError):
            # An empty JSON object: the site's reply rules still parse what they deliver.
            await self._reply(capability, headers, msg_id, b"{}", {HEADER_AGENT_ERROR: text})
        self.stats.dead_lettered += 1
        await message.term()

    async def _reply(
        self,
        capability: str,
        headers: Mapping[str, str],
        msg_id: str,
        body: bytes,
        extra: Mapping[str, str],
    ) -> None:
        token, site = headers.get(HEADER_REPLY_TOKEN), headers.get(HEADER_SITE)
        if not token or not site:
            return  # the sender asked for no reply
        reply_headers = {
            HEADER_REPLY_TOKEN: token,
            HEADER_CAPABILITY: capability,
            HEADER_MSG_ID: f"reply/{msg_id}",
            **extra,
        }
        tracing.inject(reply_headers)  # the handler's span: the reply continues its trace
        await self.nc.jetstream().publish(reply_subject(site), body, headers=reply_headers)

    async def _answered(self, key: str) -> bool:
        assert self._done is not None
        try:
            await self._done.get(key)
        except KeyNotFoundError:
            return False
        return True

    async def _remember(self, key: str) -> None:
        assert self._done is not None
        await self._done.put(key, b"1")


async def _done_bucket(js: JetStreamContext, agent: str, ttl: float, replicas: int) -> KeyValue:
    return await bucket(js, f"rb_done_{agent.replace('-', '_')}", ttl=ttl, replicas=replicas)
