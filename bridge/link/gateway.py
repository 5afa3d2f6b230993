"""The cloud end of the link: a gRPC server that knows which sites may connect and send what.

For each stream the gateway checks, before reading anything, that the TLS session is 1.3 and
that the client certificate names a known site of its trust domain that is neither revoked nor
denied; then it expects Hello from that very site. Outbound batches go to the handler (in the
cloud runtime: JetStream) and every envelope is answered, by id, with an ack once the handler
has stored it or a reject saying why not. Replies for a site go back on its stream with the
same window and batching as the edge uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bridge.errors import RbridgeError
from bridge.link.envelope import (
    CAPABILITY_NOT_ALLOWED,
    HANDLER_FAILED,
    MALFORMED,
    TOO_LARGE,
    Envelope,
    Reject,
)
from bridge.link.identity import IdentityError, SiteIdentity, identity_from_certificate
from bridge.link.inbound import InboundBatches
from bridge.link.outbox import (
    Outbox,
    OutboxClosed,
    ResultCallback,
    batch_frames,
    settle_answers,
    write_frames,
)
from bridge.link.revocation import Revocations
from bridge.link.settings import LinkSettings
from bridge.link.tls import ServerTLS
from bridge.link.turns import Turns
from bridge.link.v1 import link_pb2 as pb
from bridge.link.v1 import link_pb2_grpc as pb_grpc
from bridge.policy.subjects import SubjectPattern, subject_error

log = logging.getLogger("rbridge.link.gateway")
SERVICE = "bridge.link.v1.Link"


class OutboundHandler(Protocol):
    """What the gateway does with a site's envelopes: store them, then say which it took."""

    async def accept(
        self, site: SiteIdentity, envelopes: Sequence[Envelope]
    ) -> Sequence[Reject | None]:
        """One answer per envelope, in order: None once stored, else the reason it was refused."""
        ...


def _ignore_result(token: Any, envelope: Envelope, reject: Reject | None) -> None:
    """The default for replies: nobody waits for their outcome."""


class NotConnected(RbridgeError):
    """No stream from that site is open on this gateway."""

    retriable = True


class SiteRules:
    """What one site may send: capability patterns (NATS wildcards), with answers remembered."""

    __slots__ = ("_known", "capabilities")

    def __init__(self, capabilities: tuple[SubjectPattern, ...]) -> None:
        self.capabilities = capabilities
        self._known: dict[str, bool] = {}

    @classmethod
    def of(cls, patterns: Sequence[str]) -> SiteRules:
        return cls(tuple(SubjectPattern.parse(pattern) for pattern in patterns))

    def allows(self, capability: str) -> bool:
        known = self._known.get(capability)
        if known is None:
            known = subject_error(capability, pattern=False) is None and any(
                pattern.matches(capability.split(".")) for pattern in self.capabilities
            )
            if len(self._known) >= 4096:
                self._known.clear()
            self._known[capability] = known
        return known


@dataclass(eq=False)
class Session:
    """One open stream from one edge bridge instance."""

    identity: SiteIdentity
    instance: str
    revision: int
    outbox: Outbox
    frames: asyncio.Queue[pb.CloudFrame] = field(default_factory=asyncio.Queue)
    closing: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0
    """Envelopes read from the stream and not yet answered."""
    held_bytes: int = 0
    room: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while the gateway reads on: ``held`` and ``held_bytes`` are within their bounds."""
    resume_at: float = 0.0
    """Loop time before which this stream takes no turn (it is giving way to other sites)."""


@dataclass(frozen=True, slots=True)
class SiteLoad:
    """What one site holds at a gateway right now (for metrics; read at scrape time)."""

    site: str
    streams: int
    window: int
    inbound: int
    inbound_bytes: int
    replies: int
    reply_bytes: int


class LinkGateway(pb_grpc.LinkServicer):
    def __init__(
        self,
        *,
        tls: ServerTLS,
        revocations: Revocations,
        trust_domain: str,
        sites: Mapping[str, Sequence[str]],
        handler: OutboundHandler,
        settings: LinkSettings | None = None,
        on_reply_result: ResultCallback | None = None,
        on_sessions_changed: Callable[[str], None] | None = None,
        on_refused: Callable[[str], None] | None = None,
        name: str | None = None,
    ) -> None:
        self.tls = tls
        self.revocations = revocations
        self.trust_domain = trust_domain
        self.sites = {site: SiteRules.of(patterns) for site, patterns in sites.items()}
        self.handler = handler
        self.settings = settings or LinkSettings()
        self.name = name or f"gateway-{uuid.uuid4().hex[:8]}"
        self._on_reply_result = on_reply_result or _ignore_result
        self._on_sessions_changed = on_sessions_changed or (lambda _site: None)
        self.sessions: dict[str, list[Session]] = {}
        self._on_refused = on_refused or (lambda _code: None)
        #: The last refusals (code, why), for tests and debugging; bounded, as refusals are free
        #: for anyone who can reach the port to cause.
        self.refused: deque[tuple[str, str]] = deque(maxlen=64)
        self._turns = Turns(self.settings.store_slots)
        self._last_turn: dict[str, float] = {}  # site -> when its last turn ended (loop time)
        self._server: grpc.aio.Server | None = None
        self._probe: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._watcher: asyncio.Task[None] | None = None
        self.port = 0
        self.health_port = 0

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, address: str = "127.0.0.1:0", health_address: str | None = None) -> int:
        """Listen on ``address`` (port 0: any free port); returns the port.

        With ``health_address``, the standard gRPC health service alone is also served there
        without TLS, for orchestrators' probes (they cannot present a client certificate).
        """
        server = grpc.aio.server(options=self.settings.server_options())
        pb_grpc.add_LinkServicer_to_server(self, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self.port = server.add_secure_port(address, self.tls.credentials())
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        await server.start()
        await self._health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        if health_address is not None:
            probe = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, probe)
            self.health_port = probe.add_insecure_port(health_address)
            if self.health_port == 0:
                await server.stop(None)
                raise OSError(f"cannot listen on {health_address}")
            await probe.start()
            self._probe = probe
        self._watcher = asyncio.create_task(self._watch_revocations())
        log.info("gateway %s listening on port %d", self.name, self.port)
        return self.port

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking streams, let open ones finish their batches, then close within ``grace``."""
        if self._server is None:
            return
        await self._health.enter_graceful_shutdown()
        if self._watcher is not None:
            self._watcher.cancel()
        sessions = [session for group in self.sessions.values() for session in group]
        for session in sessions:
            self._close_session(session, "gateway stopping")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(s.done.wait() for s in sessions)), grace)
        await self._server.stop(grace)
        self._server = None
        if self._probe is not None:
            await self._probe.stop(None)
            self._probe = None

    def _close_session(self, session: Session, reason: str) -> None:
        """Say goodbye and end the stream once the batch in hand is answered."""
        if not session.closing:
            session.closing = True
            session.outbox.close()
            session.frames.put_nowait(pb.CloudFrame(goodbye=pb.Goodbye(reason=reason)))
            session.closed.set()

    async def _watch_revocations(self) -> None:
        while True:
            await asyncio.sleep(self.settings.revocation_check_interval)
            if not await asyncio.to_thread(self.revocations.refresh):
                continue
            for group in list(self.sessions.values()):
                for session in list(group):
                    refusal = self.revocations.refusal(session.identity)
                    if refusal is not None:
                        log.warning(
                            "closing the stream of site %s: %s", session.identity.site, refusal
                        )
                        self._close_session(session, refusal)

    # --- replies to sites ----------------------------------------------------------------

    def held(self) -> Iterator[Any]:
        """The tokens of every reply sent to a site (or queued) and not yet answered by it."""
        for group in self.sessions.values():
            for session in group:
                yield from session.outbox.tokens()

    def loads(self) -> list[SiteLoad]:
        """Per connected site: its streams, the window it was granted, and what it holds here
        (envelopes read and not yet stored, replies sent or queued and not yet answered)."""
        loads = []
        for site, group in list(self.sessions.items()):
            replies = [envelope for s in group for envelope in s.outbox.envelopes()]
            loads.append(
                SiteLoad(
                    site,
                    len(group),
                    sum(s.outbox.window for s in group),
                    sum(s.held for s in group),
                    sum(s.held_bytes for s in group),
                    len(replies),
                    sum(len(envelope.payload) for envelope in replies),
                )
            )
        return loads

    def connected(self, site: str) -> bool:
        return bool(self.sessions.get(site))

    async def send(self, site: str, envelope: Envelope, token: Any = None) -> None:
        """Queue a reply for ``site`` on one of its open streams (waits while its window is full)."""
        group = [session for session in self.sessions.get(site, ()) if not session.closing]
        if not group:
            raise NotConnected(site)
        session = min(group, key=lambda s: len(s.outbox))
        try:
            await session.outbox.put(envelope, token)
        except OutboxClosed:
            raise NotConnected(site) from None

    # --- the stream ----------------------------------------------------------------------

    def _authorize(self, context: grpc.aio.ServicerContext[Any, Any]) -> SiteIdentity:
        auth = context.auth_context()
        version = b"".join(auth.get("ssl_tls_version", []))
        if version != b"TLSv1.3":
            raise IdentityError(
                "tls-version",
                f"TLS 1.3 is required, the session uses {version.decode() or 'no TLS'}",
            )
        pems = list(auth.get("x509_pem_cert", []))
        if not pems:
            raise IdentityError("no-certificate", "no client certificate was presented")
        identity = identity_from_certificate(pems[0], self.trust_domain)
        if identity.site not in self.sites:
            raise IdentityError(
                "unknown-site", f"site {identity.site!r} is not configured on this gateway"
            )
        refusal = self.revocations.refusal(identity)
        if refusal is not None:
            raise IdentityError("revoked", refusal)
        return identity

    async def _refuse(
        self, context: grpc.aio.ServicerContext[Any, Any], code: str, message: str
    ) -> None:
        peer = context.peer()
        self.refused.append((code, message))
        self._on_refused(code)
        log.warning("refused a stream from %s: %s: %s", peer, code, message)
        status = (
            grpc.StatusCode.UNAUTHENTICATED
            if code in ("no-certificate", "tls-version")
            else grpc.StatusCode.PERMISSION_DENIED
        )
        await context.abort(status, f"{code}: {message}")

    async def Connect(  # type: ignore[override]  # read/write style, not an iterator
        self,
        request_iterator: Any,  # noqa: ARG002 - frames are read with context.read()
        context: grpc.aio.ServicerContext[pb.EdgeFrame, pb.CloudFrame],
    ) -> None:
        try:
            identity = self._authorize(context)
        except IdentityError as error:
            await self._refuse(context, error.code, str(error))
            return
        try:
            first = await asyncio.wait_for(context.read(), self.settings.hello_timeout)
        except TimeoutError:
            await self._refuse(context, "no-hello", "the stream did not start with Hello in time")
            return
        if not isinstance(first, pb.EdgeFrame) or first.WhichOneof("frame") != "hello":
            await self._refuse(context, "no-hello", "the first frame must be Hello")
            return
        hello = first.hello
        if hello.site != identity.site:
            await self._refuse(
                context,
                "site-mismatch",
                f"Hello names site {hello.site!r}, the certificate {identity.site!r}",
            )
            return
        window = max(1, min(hello.window or self.settings.window, self.settings.window))
        session = Session(
            identity,
            hello.instance,
            hello.policy_revision,
            Outbox(window, self.settings.max_batch, self.settings.linger, self._on_reply_result),
        )
        session.room.set()
        self.sessions.setdefault(identity.site, []).append(session)
        self._on_sessions_changed(identity.site)
        log.info(
            "site %s instance %s connected (policy revision %d)",
            identity.site,
            hello.instance,
            hello.policy_revision,
        )
        await context.write(
            pb.CloudFrame(
                welcome=pb.Welcome(
                    gateway=self.name,
                    window=self.settings.window,
                    max_batch=self.settings.max_batch,
                )
            )
        )
        tasks = [
            asyncio.create_task(self._read(session, context)),
            asyncio.create_task(write_frames(context.write, session.frames)),
            asyncio.create_task(batch_frames(session.outbox, session.frames, pb.CloudFrame)),
            asyncio.create_task(session.closed.wait()),
        ]
        reader, writer, batcher, _closed = tasks
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if writer in done:
                writer.result()  # a failed write ends the stream
            if batcher in done:
                # It never ends by itself; had it failed unwatched, every reply to this site
                # would have stopped while the stream looked healthy.
                failure = batcher.exception()
                log.error(
                    "site %s: replies could not be framed (%s); ending the stream",
                    identity.site, type(failure).__name__ if failure else "the batcher ended",
                )  # fmt: skip
                await context.abort(grpc.StatusCode.INTERNAL, "the gateway could not send replies")
            if reader in done and (failure := reader.exception()) is not None:
                if isinstance(failure, grpc.aio.AbortError):
                    raise failure
                # Bytes that do not parse as a frame: this stream is over, the others are not.
                log.warning(
                    "site %s sent an unreadable frame (%s)", identity.site, type(failure).__name__
                )
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed frame")
            # The edge is done sending, or we are closing: answer the batch in hand, flush, end.
            async with session.busy:
                session.closing = True
            # Flush what is queued, unless the writer is gone (the edge closed the stream):
            # then nothing can be flushed and waiting would only keep a dead session listed.
            flushed = asyncio.ensure_future(session.frames.join())
            try:
                await asyncio.wait(
                    [flushed, writer],
                    timeout=self.settings.hello_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                flushed.cancel()
        except (
            grpc.aio.AioRpcError,
            asyncio.CancelledError,
            ConnectionError,
            TimeoutError,
        ) as error:
            log.info("stream of site %s ended: %s", identity.site, type(error).__name__)
        finally:
            for task in tasks:
                task.cancel()
            # Forget the session before waiting for anything: gRPC cancels this handler when
            # the edge cancels its call, and a cancellation in the wait below would otherwise
            # leave a dead session listed (and counted in rbridge_link_sessions) for ever.
            group = self.sessions.get(identity.site, [])
            if session in group:
                group.remove(session)
            if not group:
                self.sessions.pop(identity.site, None)
            self._on_sessions_changed(identity.site)
            lost = session.outbox.fail_all("the site's stream ended before it answered")
            session.done.set()
            log.info(
                "site %s instance %s disconnected (%d replies unanswered)",
                identity.site,
                session.instance,
                lost,
            )
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, session: Session, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Acks and rejects of replies are settled as they come; batches are handed to their
        own task (stored in order), so a reply's ack never waits behind a store."""
        inbound = InboundBatches(functools.partial(self._accept_taken, session))
        try:
            while True:
                frame = await context.read()
                if frame is grpc.aio.EOF:
                    break
                kind = frame.WhichOneof("frame")
                if settle_answers(session.outbox, kind, frame):
                    continue
                if kind == "batch":
                    envelopes = frame.batch.envelopes
                    session.held += len(envelopes)
                    session.held_bytes += sum(len(wire.payload) for wire in envelopes)
                    inbound.put(envelopes)
                    if not self._has_room(session):
                        # Read no more of this stream until what it sent is stored: HTTP/2 flow
                        # control then holds the edge back, and its memory here stays bounded.
                        session.room.clear()
                        await session.room.wait()
                elif kind == "goodbye":
                    log.info(
                        "site %s says goodbye: %s",
                        session.identity.site,
                        frame.goodbye.reason[:200],
                    )
                    break
                else:
                    log.warning("site %s sent a frame of no known kind", session.identity.site)
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "malformed frame: no known kind"
                    )
            await inbound.drain()  # answer the batches in hand before the stream ends
        finally:
            await inbound.close()

    def _has_room(self, session: Session) -> bool:
        return (
            session.held < self.settings.window
            and session.held_bytes < self.settings.site_buffer_bytes
        )

    async def _accept_taken(self, session: Session, wires: Sequence[pb.Envelope]) -> None:
        """Store a stream's envelopes a turn at a time, in order, taking turns with the others."""
        size, done = self.settings.turn_envelopes, 0
        loop = asyncio.get_running_loop()
        try:
            while done < len(wires):
                if (wait := session.resume_at - loop.time()) > 0:
                    await asyncio.sleep(wait)  # giving way to the other sites (see _give_way)
                chunk = wires[done : done + size]
                started = loop.time()
                async with self._turns.turn(), session.busy:
                    if session.closing:
                        # After our Goodbye nothing new is taken; the edge resends it elsewhere.
                        return
                    await self._accept_batch(session, chunk)
                done += len(chunk)
                self._release(session, chunk)
                self._give_way(session, started, loop.time())
                if done < len(wires):
                    await asyncio.sleep(0)  # let other streams' frames in before the next turn
        finally:
            if done < len(wires):
                self._release(session, wires[done:])

    def _give_way(self, session: Session, started: float, ended: float) -> None:
        """While other sites are sending too, a stream's turns take at most ``busy_share`` of
        the gateway's time: after a turn it waits in proportion before its next one. Turns
        alone bound how long a quiet site waits for a turn; this leaves the gateway the time to
        serve it promptly at every other step too (reading, replies, acks)."""
        site = session.identity.site
        self._last_turn[site] = ended
        share = self.settings.busy_share
        if share >= 1:
            return
        horizon = ended - 1.0
        if any(at > horizon for other, at in self._last_turn.items() if other != site):
            session.resume_at = ended + (ended - started) * (1 / share - 1)
        if len(self._last_turn) > 2 * len(self.sessions) + 64:
            self._last_turn = {k: v for k, v in self._last_turn.items() if v > horizon}

    def _release(self, session: Session, wires: Sequence[pb.Envelope]) -> None:
        session.held -= len(wires)
        session.held_bytes -= sum(len(wire.payload) for wire in wires)
        if self._has_room(session):
            session.room.set()

    async def _accept_batch(self, session: Session, wires: Sequence[pb.Envelope]) -> None:
        rules = self.sites[session.identity.site]
        limit = self.settings.max_envelope_bytes
        answers: dict[int, Reject] = {}
        accepted: list[Envelope] = []
        positions: list[int] = []
        for position, wire in enumerate(wires):
            if not wire.id or len(wire.id) > 256:
                answers[position] = Reject(MALFORMED, "envelope without a valid id")
            elif len(wire.payload) > limit:
                answers[position] = Reject(
                    TOO_LARGE, f"payload of {len(wire.payload)} bytes exceeds {limit}"
                )
            elif not rules.allows(wire.capability):
                answers[position] = Reject(
                    CAPABILITY_NOT_ALLOWED,
                    f"site {session.identity.site!r} may not send capability {wire.capability[:200]!r}",
                )
                log.warning(
                    "site %s sent capability %r it may not send (id %s)",
                    session.identity.site,
                    wire.capability[:200],
                    wire.id[:64],
                )
            else:
                accepted.append(Envelope.from_wire(wire))
                positions.append(position)
        if accepted:
            try:
                results = list(await self.handler.accept(session.identity, accepted))
                if len(results) != len(accepted):
                    raise ValueError("the handler answered for a different number of envelopes")
            except Exception as error:
                log.exception("handler failed on a batch from site %s", session.identity.site)
                results = [
                    Reject(
                        HANDLER_FAILED, f"the gateway could not store it ({type(error).__name__})"
                    )
                ] * len(accepted)
            for position, result in zip(positions, results, strict=True):
                if result is not None:
                    answers[position] = result
        acks = [wire.id for position, wire in enumerate(wires) if position not in answers]
        if acks:
            session.frames.put_nowait(pb.CloudFrame(acks=pb.Acks(ids=acks)))
        if answers:
            rejects = [
                pb.Reject(id=wires[p].id, code=r.code, reason=r.reason) for p, r in answers.items()
            ]
            session.frames.put_nowait(pb.CloudFrame(rejects=pb.Rejects(rejects=rejects)))
