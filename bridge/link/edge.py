"""The on-prem end of the link: one long-lived stream to a gateway, kept up through failures.

``send`` queues an envelope (waiting while the window is full); the outcome of each envelope
(ack, or reject with a code) comes back through ``on_result`` exactly once. When the stream
breaks, the client reconnects with jittered exponential backoff, rebuilding its channel if its
certificate files changed, and resends every envelope not yet answered, with the same ids.
Envelopes arriving from the cloud (replies, cloud-initiated requests) go to the inbound handler,
and each is answered with an ack or a reject.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import grpc

from bridge.link.envelope import HANDLER_FAILED, Envelope, Reject, RejectCode
from bridge.link.inbound import InboundBatches
from bridge.link.outbox import (
    Outbox,
    ResultCallback,
    batch_frames,
    settle_answers,
    write_frames,
)
from bridge.link.settings import LinkSettings
from bridge.link.tls import ClientTLS, TLSConfigError
from bridge.link.v1 import link_pb2 as pb
from bridge.link.v1 import link_pb2_grpc as pb_grpc

log = logging.getLogger("rbridge.link.edge")
State = Literal["idle", "connecting", "up", "down", "stopped"]


class InboundHandler(Protocol):
    async def accept(self, envelopes: Sequence[Envelope]) -> Sequence[Reject | None]:
        """One answer per envelope from the cloud, in order: None to ack, or a Reject."""
        ...


class RefuseInbound:
    """The default inbound handler: this edge takes nothing from the cloud."""

    async def accept(self, envelopes: Sequence[Envelope]) -> Sequence[Reject | None]:
        return [
            Reject(RejectCode.NOT_ACCEPTED, "this edge bridge takes no inbound envelopes")
        ] * len(envelopes)


@dataclass(frozen=True, slots=True)
class Hello:
    site: str
    instance: str = ""
    policy_revision: int = 0


def describe(error: BaseException) -> str:
    """A one-line account of why a connection failed, for logs, state and operators."""
    if isinstance(error, grpc.aio.AioRpcError):
        details = (error.details() or "").strip()
        code = error.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            lowered = details.lower()
            if (
                "certificate" in lowered
                or "handshake" in lowered
                or "ssl" in lowered
                or "tls" in lowered
            ):
                return f"TLS handshake with the gateway failed: {details}"
            return f"gateway unavailable: {details}"
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return f"the gateway refused this site: {details}"
        return f"{code.name.lower()}: {details}"
    if isinstance(error, TLSConfigError):
        return f"TLS configuration: {error}"
    return f"{type(error).__name__}: {error}"


class EdgeLink:
    def __init__(
        self,
        target: str,
        tls: ClientTLS,
        hello: Hello,
        *,
        on_result: ResultCallback,
        inbound: InboundHandler | None = None,
        settings: LinkSettings | None = None,
        standby: Sequence[str] = (),
    ) -> None:
        #: The gateway's address first, then others of the same destination tried in turn when
        #: the one in use cannot be reached or its stream ends.
        self.targets = [target, *standby]
        self._current = 0
        self.tls = tls
        self.hello = (
            hello
            if hello.instance
            else Hello(hello.site, f"edge-{uuid.uuid4().hex[:8]}", hello.policy_revision)
        )
        self.settings = settings or LinkSettings()
        self.inbound = inbound or RefuseInbound()
        self.outbox = Outbox(
            self.settings.window, self.settings.max_batch, self.settings.linger, on_result
        )
        self.state: State = "idle"
        self.last_error = ""
        self.gateway = ""
        self.connects = 0
        self._channel: grpc.aio.Channel | None = None
        self._runner: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._stopping = False
        self._goodbye = asyncio.Event()
        self._refresh = asyncio.Event()
        self._gateway_goodbye = ""

    @property
    def target(self) -> str:
        """The address in use (or tried next)."""
        return self.targets[self._current]

    # --- public API ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background; ``wait_up`` waits for the first Welcome."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"edge-link-{self.target}")

    async def wait_up(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._up.wait(), timeout)

    async def send(self, envelope: Envelope, token: Any = None) -> None:
        """Queue ``envelope``; waits while the window is full (the link's back-pressure)."""
        await self.outbox.put(envelope, token)

    async def send_many(self, items: Sequence[tuple[Envelope, Any]]) -> list[Any]:
        """Queue several (envelope, token) pairs in order; cheaper per envelope than ``send``.

        Returns the tokens of envelopes skipped because their id is already in flight."""
        return await self.outbox.put_many(items)

    def refresh(self) -> None:
        """End the current stream gracefully and connect again at once, with credentials read
        afresh (a rotated certificate); unanswered envelopes are resent with their ids, so the
        cloud's duplicate window drops any copy and nothing is lost."""
        if self.state == "up":
            self._refresh.set()

    def set_policy_revision(self, revision: int) -> None:
        """The revision announced in the next Hello."""
        self.hello = Hello(self.hello.site, self.hello.instance, revision)

    async def stop(self, grace: float = 5.0) -> int:
        """Take no more envelopes, wait up to ``grace`` for answers, say goodbye, close.

        Returns how many envelopes were still unanswered; they are reported to ``on_result``
        as rejected with ``link-lost`` so the caller can leave them for redelivery.
        """
        self.outbox.close()
        if self.state == "up":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.drained(), grace)
        self._stopping = True
        self._goodbye.set()
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._runner), 1.0)
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        await self._close_channel()
        lost = self.outbox.fail_all("the link stopped before the gateway answered")
        self.state = "stopped"
        return lost

    # --- connection loop -----------------------------------------------------------------

    async def _close_channel(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close(grace=None)

    async def _channel_for_attempt(self) -> grpc.aio.Channel:
        if self._channel is None or self.tls.changed():
            await self._close_channel()
            credentials = self.tls.credentials()
            options = [*self.settings.client_options(), *self.tls.channel_options()]
            self._channel = grpc.aio.secure_channel(self.target, credentials, options=options)
        return self._channel

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            self.state = "connecting"
            try:
                await self._session(await self._channel_for_attempt())
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.last_error = describe(error)
                log.warning("link to %s down: %s", self.target, self.last_error)
                # A failed handshake can leave the channel in a state worth rebuilding.
                await self._close_channel()
            self._up.clear()
            if self._stopping:
                break
            self.state = "down"
            if len(self.targets) > 1:
                await self._close_channel()
                self._current = (self._current + 1) % len(self.targets)
                if self._current != 0:
                    continue  # each standby is tried at once; the pause comes after a round
            delay = min(self.settings.backoff_max, self.settings.backoff_initial * 2**attempt)
            attempt = min(attempt + 1, 16)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto

    async def _session(self, channel: grpc.aio.Channel) -> None:
        stub = pb_grpc.LinkStub(channel)
        call = stub.Connect()
        hello = self.hello
        await call.write(
            pb.EdgeFrame(
                hello=pb.Hello(
                    site=hello.site,
                    instance=hello.instance,
                    policy_revision=hello.policy_revision,
                    window=self.settings.window,
                    software="rbridge",
                )
            )
        )
        self._gateway_goodbye = ""
        first = await call.read()
        if not isinstance(first, pb.CloudFrame) or first.WhichOneof("frame") != "welcome":
            await call.done_writing()
            raise ConnectionError("the gateway did not answer Hello with Welcome")
        self.gateway = first.welcome.gateway
        self.connects += 1
        resent = self.outbox.requeue()
        self.state = "up"
        self.last_error = ""
        self._up.set()
        log.info("link up to %s (gateway %s), resending %d", self.target, self.gateway, resent)
        frames: asyncio.Queue[pb.EdgeFrame] = asyncio.Queue()
        self._refresh.clear()
        tasks = [
            asyncio.create_task(self._read(call, frames)),
            asyncio.create_task(write_frames(call.write, frames)),
            asyncio.create_task(batch_frames(self.outbox, frames, pb.EdgeFrame)),
            asyncio.create_task(self._goodbye.wait()),
            asyncio.create_task(self._refresh.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            leaving = tasks[3] in done or tasks[4] in done
            if leaving:
                await frames.join()
                reason = "edge bridge stopping" if tasks[3] in done else "new certificate"
                # Best effort: the gateway may already have ended the stream.
                with contextlib.suppress(
                    grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError
                ):
                    await call.write(pb.EdgeFrame(goodbye=pb.Goodbye(reason=reason)))
                    await call.done_writing()
                if tasks[4] in done:
                    log.info("link to %s: reconnecting with the new certificate", self.target)
                    return
            for task in done:
                if task not in (tasks[3], tasks[4]) and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if tasks[0] in done:
                raise ConnectionError(self._gateway_goodbye or "the gateway ended the stream")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            call.cancel()

    async def _read(self, call: Any, frames: asyncio.Queue[pb.EdgeFrame]) -> None:
        """Acks and rejects are settled as they come; inbound batches are handed to their own
        task, so an ack never waits behind a batch being taken."""
        inbound = InboundBatches(functools.partial(self._accept_inbound, frames=frames))
        try:
            while True:
                frame = await call.read()
                if frame is grpc.aio.EOF:
                    break
                kind = frame.WhichOneof("frame")
                if settle_answers(self.outbox, kind, frame):
                    continue
                if kind == "batch":
                    inbound.put(frame.batch.envelopes)
                elif kind == "goodbye":
                    self._gateway_goodbye = (
                        f"the gateway said goodbye: {frame.goodbye.reason[:200]}"
                    )
                    log.info("%s", self._gateway_goodbye)
            await inbound.drain()  # answer what the gateway sent before it closed
        finally:
            await inbound.close()

    async def _accept_inbound(
        self, wires: Sequence[pb.Envelope], *, frames: asyncio.Queue[pb.EdgeFrame]
    ) -> None:
        envelopes = [Envelope.from_wire(wire) for wire in wires]
        try:
            results = list(await self.inbound.accept(envelopes))
            if len(results) != len(envelopes):
                raise ValueError("the inbound handler answered for a different number of envelopes")
        except Exception as error:
            log.exception("inbound handler failed")
            results = [
                Reject(HANDLER_FAILED, f"the edge could not take it ({type(error).__name__})")
            ] * len(envelopes)
        acks = [e.id for e, result in zip(envelopes, results, strict=True) if result is None]
        rejects = [
            pb.Reject(id=e.id, code=result.code, reason=result.reason)
            for e, result in zip(envelopes, results, strict=True)
            if result is not None
        ]
        if acks:
            frames.put_nowait(pb.EdgeFrame(acks=pb.Acks(ids=acks)))
        if rejects:
            frames.put_nowait(pb.EdgeFrame(rejects=pb.Rejects(rejects=rejects)))
