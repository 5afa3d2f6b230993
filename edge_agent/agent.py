"""On-prem agents: handlers for local subjects, asks to other agents and to the cloud.

Every agent is both a responder (its handlers) and an initiator (``ask``, ``delegate``,
``ask_cloud``, ``send_cloud``). Handlers of one agent name share a NATS queue group, so starting
another process of the same agent shares its work. A handler that raises does not stop the
agent: the message is tried again, up to ``max_attempts`` times, then put on the dead-letter
subject ``rb.agents.dead.<agent>`` with the error, and whoever asked gets
:class:`~edge_agent.errors.HandlerFailed` instead of waiting for a timeout.

Example::

    agent = Agent("fraud-check", nats_url="nats://127.0.0.1:4222")

    @agent.handle("claims.fraud.check")
    async def check(request: Request) -> dict[str, object]:
        claim = request.json()
        return {"suspicious": claim["amount"] > 50_000}

    await agent.run()   # until SIGTERM/SIGINT or agent.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, NoStreamResponseError

from bridge import natspublish, tracing
from bridge.agentkit import check_agent_name, dead_letter_headers, registrar, until_signalled
from bridge.contract import (
    CLASSIFICATIONS,
    HEADER_AGENT_ERROR,
    HEADER_CLASS,
    HEADER_DETAIL,
    HEADER_MSG_ID,
    HEADER_REASON,
    HEADER_REPLY_TO,
    HEADER_RULE,
    HEADER_STATUS,
    REPLIES_AGAIN,
    REPLIES_AGAIN_MAX,
    dead_letter_subject,
    error_summary,
    outbound_subject,
)
from bridge.natsconnect import (
    AGENT_IDENTITY_HINT,
    NatsConnectError,
    NatsIdentity,
    connect,
    shown_url,
)
from bridge.tracing import SpanKind
from edge_agent import asks
from edge_agent.asks import (
    HEADER_ASK_ANSWERED,
    HEADER_ASK_ID,
    HEADER_ASK_RECEIVED,
    HEADER_ASK_UNKNOWN,
    MAX_ASK_ID,
    REPEATS_PREFIX,
    AskMemory,
    Remembered,
    next_receipt_wait,
    repeats_subject,
)
from edge_agent.errors import AgentError, Denied, HandlerFailed, TimedOut, Unavailable
from edge_agent.heartbeat import Heartbeat

log = logging.getLogger("edge_agent")

#: The status NATS sends to a reply subject when nobody is subscribed to the ask's subject.
NO_RESPONDERS: Final = "503"


@dataclass(frozen=True, slots=True)
class Request:
    """A message a handler received: subject, headers, raw bytes, and which attempt this is."""

    subject: str
    data: bytes
    headers: Mapping[str, str]
    attempt: int = 1

    def json(self) -> Any:
        """The payload as JSON (raises ``orjson.JSONDecodeError`` if it is not JSON)."""
        return orjson.loads(self.data)


Handler = Callable[[Request], Awaitable[Any]]


@dataclass(slots=True)
class AgentStats:
    """What an agent did since it started; sent with every heartbeat."""

    handled: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    asked: int = 0
    #: Asks sent again because this connection moved or no receipt came (edge_agent.asks).
    asks_sent_again: int = 0


@dataclass(slots=True)
class _Waiting:
    future: asyncio.Future[Msg]
    capability: str
    #: An ask (not an ``ask_cloud``): it takes receipts and is sent again (edge_agent.asks).
    ask: bool = False
    #: This connection moved to another server since the ask was sent: its answer may be lost.
    moved: bool = False
    #: The answering agent sent a receipt for this sending of the ask.
    received: bool = False
    #: Where the instance that sent a receipt takes repeats of the ask.
    again_to: str | None = None
    #: What the asker waits on: set by the answer, a move, a first receipt, or its timer.
    signal: asyncio.Future[None] | None = None

    def poke(self) -> None:
        if self.signal is not None and not self.signal.done():
            self.signal.set_result(None)


def encode(payload: Any) -> bytes:
    """Payloads are JSON; bytes are sent as they are."""
    return payload if isinstance(payload, bytes) else orjson.dumps(payload)


class Agent:
    """An on-prem agent on the local NATS. See the module docstring for an example."""

    def __init__(
        self,
        name: str,
        *,
        nats_url: str | None = None,
        nkey_seed: str | Path | None = None,
        credentials: str | Path | None = None,
        instance: str | None = None,
        max_attempts: int = 3,
        retry_delay: float = 0.05,
        heartbeat_seconds: float = 5.0,
        max_concurrency: int = 64,
        connect_timeout: float = 10.0,
        connect: Mapping[str, Any] | None = None,
        failover_seconds: float = 10.0,
    ) -> None:
        """``failover_seconds``: how long ``send_cloud`` keeps trying to store a message, and
        ``ask`` to reach an agent, while NATS cannot take it for the moment (a server of the
        cluster lost and its streams electing a new leader, this connection or the other agent's
        moving to another server); a message id makes the retries store it once."""
        check_agent_name(name)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.name = name
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # Given here, else RBRIDGE_AGENT_NATS_URL / _NKEY / _CREDS, else the local default.
        self.identity = NatsIdentity.for_agents(nats_url, nkey_seed, credentials)
        self.nats_url = self.identity.url
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.heartbeat_seconds = heartbeat_seconds
        self.connect_timeout = connect_timeout
        self.failover_seconds = failover_seconds
        self.stats = AgentStats()
        self._connect_options = dict(connect or {})
        self._handlers: dict[str, Handler] = {}
        self._subscriptions: list[Subscription] = []
        self._slots = asyncio.Semaphore(max_concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._waiting: dict[str, _Waiting] = {}
        self._asks = AskMemory()
        self._receipting: set[str] = set()  # subjects whose agents send receipts
        self._inbox = ""
        self._repeats = ""  # where this instance alone takes repeats of asks it received
        self._receipts_sending: set[asyncio.Future[None]] = set()
        self._nc: Client | None = None
        self._heartbeat: Heartbeat | None = None
        self._replies_again: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._last_nats_error = ""

    # --- declaring -------------------------------------------------------------------------

    def handle(self, subject: str) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``subject`` (wildcards allowed); its return value is the reply.

        >>> agent = Agent("intake")
        >>> @agent.handle("claims.intake")
        ... async def intake(request: Request) -> dict[str, str]:
        ...     return {"received": request.json()["claim_id"]}
        """

        return registrar(self._handlers, "subject")(subject)

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    @property
    def nc(self) -> Client:
        """The NATS connection (after :meth:`start`)."""
        if self._nc is None:
            raise RuntimeError("the agent is not started")
        return self._nc

    async def _on_nats_error(self, error: Exception) -> None:
        # Instead of nats-py's default, which logs a traceback for every failed attempt.
        self._last_nats_error = error_summary(error)
        log.warning("NATS %s: %s", shown_url(self.nats_url), self._last_nats_error)

    async def _on_reconnected(self) -> None:
        # Answers sent while this connection moved may be lost: waiting asks send again, and
        # the edge bridge is asked for the cloud's replies it published to waiting ask_clouds.
        for waiting in self._waiting.values():
            if waiting.ask:
                waiting.moved = True
                waiting.poke()
        if self._replies_again is not None:
            self._replies_again.cancel()
        self._replies_again = asyncio.create_task(self._ask_for_replies())
        user_callback = self._connect_options.get("reconnected_cb")
        if user_callback is not None:
            await user_callback()

    async def _ask_for_replies(self) -> None:
        for pause in asks.REPLIES_AGAIN_AFTER:
            await asyncio.sleep(pause)
            replies = [f"{self._inbox}.{t}" for t, w in self._waiting.items() if not w.ask]
            if not replies or self._nc is None:
                return
            for first in range(0, len(replies), REPLIES_AGAIN_MAX):
                chunk = orjson.dumps(replies[first : first + REPLIES_AGAIN_MAX])
                with contextlib.suppress(NatsError, OSError):
                    await self._nc.publish(REPLIES_AGAIN, chunk)

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        tracing.configure(f"agent-{self.name}")  # the OTEL_* environment, when it is set
        """Connect, subscribe every handler in the agent's queue group, start the heartbeat."""
        try:
            # Retried until ``connect_timeout``; once connected, reconnects go on for ever.
            self._nc = await connect(
                self.identity,
                name=f"{self.name}/{self.instance}",
                timeout=self.connect_timeout,
                hint=AGENT_IDENTITY_HINT,
                on_error=self._on_nats_error,
                **{**self._connect_options, "reconnected_cb": self._on_reconnected},
            )
        except NatsConnectError as error:
            raise Unavailable(shown_url(self.nats_url), str(error)) from None
        self._inbox = f"_INBOX.{self.name}.{uuid.uuid4().hex}"
        await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_answer)
        self._repeats = f"{REPEATS_PREFIX}{self.name}.{uuid.uuid4().hex}"
        self._subscriptions.append(await self._nc.subscribe(self._repeats, cb=self._on_repeat))
        for subject, handler in self._handlers.items():
            # Each subscription knows its handler: no subject matching of our own.
            serve = functools.partial(self._on_request, handler)
            self._subscriptions.append(await self._nc.subscribe(subject, queue=self.name, cb=serve))
        self._heartbeat = Heartbeat(self, self.heartbeat_seconds)
        await self._heartbeat.start()
        await natspublish.flush(self._nc)  # the subscriptions are the server's before "started"
        log.info("agent %s started (%s)", self.name, self.instance)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages, let running handlers finish (up to ``grace`` s), say goodbye."""
        if self._nc is None:
            return
        for subscription in self._subscriptions:
            with contextlib.suppress(NatsError):
                await subscription.unsubscribe()
        self._subscriptions.clear()
        if self._running:
            await asyncio.wait(self._running, timeout=grace)
        for task in self._running:
            task.cancel()
        if self._heartbeat is not None:
            await self._heartbeat.stop()
        if self._replies_again is not None:
            self._replies_again.cancel()
        for waiting in self._waiting.values():
            waiting.future.cancel()
            waiting.poke()
        with contextlib.suppress(NatsError, OSError):
            await self._nc.drain()
        self._nc = None
        self._stopped.set()
        log.info("agent %s stopped", self.name)

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT or :meth:`stop`, then stop gracefully."""
        await self.start()
        try:
            await until_signalled(self._stopped)
        finally:
            await self.stop()

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # --- responding ------------------------------------------------------------------------

    async def _on_request(self, handler: Handler, message: Msg) -> None:
        ask = _ask_key(message)
        if ask is not None:
            known = self._asks.take(ask)
            if known is not None:  # a repeat: running still, or answered from memory
                await self._tell_asker(message, known)
                return
            # A receipt if the handler is still at it shortly, so the asker knows the ask
            # arrived (see edge_agent.asks); a quick answer says so itself.
            asyncio.get_running_loop().call_later(
                asks.RECEIPT_AFTER, self._receipt_if_running, message.reply, ask
            )
        # The subscription delivers in order; run handlers concurrently, bounded.
        await self._slots.acquire()
        task = asyncio.create_task(self._serve(handler, message, ask))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    def _receipt_if_running(self, reply: str, ask: tuple[str, str]) -> None:
        known = self._asks.known(ask)
        if known is not None and known.answer is None and self._nc is not None:
            receipt = self._nc.publish(reply, b"", headers={HEADER_ASK_RECEIVED: self._repeats})
            self._receipts_sending.add(task := asyncio.ensure_future(receipt))
            task.add_done_callback(self._receipt_sent)

    def _receipt_sent(self, task: asyncio.Future[None]) -> None:
        self._receipts_sending.discard(task)
        if not task.cancelled():
            task.exception()  # a lost receipt is a repeat later, nothing worse

    async def _on_repeat(self, message: Msg) -> None:
        """A repeat of an ask sent to this instance alone (it sent the receipt)."""
        ask = _ask_key(message)
        if ask is not None:
            await self._tell_asker(message, self._asks.known(ask))

    async def _tell_asker(self, message: Msg, known: Remembered | None) -> None:
        """The receipt again while the handler runs, its answer once it has run, or (not
        known here) that the ask must go to its subject again."""
        headers: dict[str, str] | None
        if known is None:
            data, headers = b"", {HEADER_ASK_UNKNOWN: "1"}
        elif known.answer is None:
            data, headers = b"", {HEADER_ASK_RECEIVED: self._repeats}
        else:
            data, headers = known.answer[0], known.answer[1]
        with contextlib.suppress(NatsError):
            await self.nc.publish(message.reply, data, headers=headers)

    async def _serve(self, handler: Handler, message: Msg, ask: tuple[str, str] | None) -> None:
        headers = dict(message.headers or {})
        try:
            with tracing.span(f"handle {message.subject}", headers, kind=SpanKind.SERVER):
                await self._serve_traced(handler, message, headers, ask)
        finally:
            if ask is not None:
                self._asks.dropped(ask)  # no-op once answered

    async def _answer_ask(
        self,
        message: Msg,
        ask: tuple[str, str] | None,
        data: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        if ask is not None:
            # The answer says this agent sends receipts (the asker then checks on its asks).
            headers = {**(headers or {}), HEADER_ASK_ANSWERED: "1"}
            self._asks.answered(ask, data, headers)
        await self.nc.publish(message.reply, data, headers=headers)

    async def _serve_traced(
        self,
        handler: Handler,
        message: Msg,
        headers: dict[str, str],
        ask: tuple[str, str] | None,
    ) -> None:
        error: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            request = Request(message.subject, message.data, headers, attempt)
            try:
                result = await handler(request)
            except asyncio.CancelledError:
                raise
            except Exception as failure:
                error = failure
                self.stats.failed_attempts += 1
                log.warning(
                    "handler for %s failed (attempt %d of %d): %s",
                    message.subject,
                    attempt,
                    self.max_attempts,
                    type(failure).__name__,
                )
                if attempt < self.max_attempts:
                    await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
                continue
            self.stats.handled += 1
            if message.reply:
                await self._answer_ask(message, ask, b"" if result is None else encode(result))
            return
        assert error is not None
        await self._dead_letter(message, headers, error, ask)

    async def _dead_letter(
        self,
        message: Msg,
        headers: dict[str, str],
        error: BaseException,
        ask: tuple[str, str] | None,
    ) -> None:
        self.stats.dead_lettered += 1
        text = error_summary(error)
        dead_headers = dead_letter_headers(
            headers,
            error=text,
            subject=message.subject,
            attempts=self.max_attempts,
            **{"Agent-Instance": self.instance},
        )
        await self.nc.publish(dead_letter_subject(self.name), message.data, headers=dead_headers)
        if message.reply:
            await self._answer_ask(message, ask, b"", {HEADER_AGENT_ERROR: text})
        log.error(
            "message on %s dead-lettered after %d attempts", message.subject, self.max_attempts
        )

    # --- asking other agents ---------------------------------------------------------------

    async def ask(self, subject: str, payload: Any, *, timeout: float = 5.0) -> Any:
        """Ask the agent serving ``subject`` and return its JSON answer (None for no body).

        Raises :class:`Unavailable` when no agent serves it, :class:`TimedOut`, or
        :class:`HandlerFailed` when that agent failed on every attempt.
        """
        self.stats.asked += 1
        with tracing.span(f"ask {subject}", kind=SpanKind.CLIENT):
            headers: dict[str, str] = {}
            tracing.inject(headers)
            return await self._ask(subject, payload, headers or None, timeout)

    async def _ask(
        self, subject: str, payload: Any, headers: dict[str, str] | None, timeout: float
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        failover_deadline = loop.time() + min(timeout, self.failover_seconds)
        token = uuid.uuid4().hex
        reply, data = f"{self._inbox}.{token}", encode(payload)
        sent_headers = {**(headers or {}), HEADER_ASK_ID: token}
        waiting = _Waiting(loop.create_future(), subject, ask=True)
        self._waiting[token] = waiting
        pause, receipt_wait = 0.1, asks.RECEIPT_WAIT
        try:
            while True:
                to = waiting.again_to or subject
                waiting.moved, waiting.received = False, False
                await self.nc.publish(to, data, reply=reply, headers=sent_headers)
                try:
                    again = await self._answer_or_again(waiting, deadline, receipt_wait)
                except TimeoutError:
                    raise TimedOut(subject, timeout) from None
                if again:
                    if not waiting.received:
                        receipt_wait = next_receipt_wait(receipt_wait)
                    self.stats.asks_sent_again += 1
                    log.debug("asking %s again (connection moved or no word)", subject)
                    continue
                answer = waiting.future.result()
                answer_headers = answer.headers or {}
                if HEADER_ASK_UNKNOWN in answer_headers:  # that instance forgot it
                    waiting.again_to, waiting.future = None, loop.create_future()
                    continue
                if answer_headers.get("Status") != NO_RESPONDERS:
                    return _answer(subject, answer)
                waiting.future = loop.create_future()
                if waiting.again_to is not None:  # the instance that had it is gone
                    waiting.again_to = None
                    continue
                # Nobody listens right now; in a cluster the agent may be moving to another
                # server. Try again until the failover time (within the timeout) runs out.
                if loop.time() + pause > failover_deadline:
                    raise Unavailable(subject, "no agent serves this subject")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
        finally:
            self._waiting.pop(token, None)

    async def _answer_or_again(
        self, waiting: _Waiting, deadline: float, receipt_wait: float
    ) -> bool:
        """Wait for the answer (False) or until the ask should be sent again (True): this
        connection moved, or its answering agents send receipts and no word came in time."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        while not waiting.future.done():
            if waiting.moved:
                return True
            now = loop.time()
            if now >= deadline:
                raise TimeoutError
            until = deadline
            if waiting.capability in self._receipting:
                again = sent + (asks.CHECK_EVERY if waiting.received else receipt_wait)
                if now >= again:
                    return True
                until = min(until, again)
            signal = waiting.signal = loop.create_future()
            timer = loop.call_at(until, waiting.poke)
            try:
                await signal
            finally:
                timer.cancel()
        return False

    async def delegate(
        self, tasks: Mapping[str, tuple[str, Any]], *, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Ask several agents at once: ``{"name": (subject, payload)}`` → ``{"name": answer}``.

        All sub-tasks run concurrently; if any fails, the others still finish and
        :class:`DelegationFailed` carries every answer and every error.

        >>> async def report(agent: Agent) -> dict[str, Any]:
        ...     return await agent.delegate({
        ...         "data": ("reports.data", {"quarter": "2026Q3"}),
        ...         "checks": ("reports.validate", {"quarter": "2026Q3"}),
        ...         "layout": ("reports.format", {"style": "regulator"}),
        ...     })
        """
        names = list(tasks)
        outcomes = await asyncio.gather(
            *(self.ask(subject, payload, timeout=timeout) for subject, payload in tasks.values()),
            return_exceptions=True,
        )
        answers: dict[str, Any] = {}
        errors: dict[str, AgentError] = {}
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, AgentError):
                errors[name] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                answers[name] = outcome
        if errors:
            raise DelegationFailed(answers, errors)
        return answers

    # --- the cloud, through the bridge -----------------------------------------------------

    async def send_cloud(
        self,
        capability: str,
        payload: Mapping[str, Any] | bytes,
        *,
        classification: str = "confidential",
        reply_to: str | None = None,
        msg_id: str | None = None,
    ) -> str:
        """Hand a message to the bridge (``rb.out.<capability>``); durable on-prem once this returns.

        Returns the message id (give ``msg_id`` to make a retried send idempotent). The reply, if
        any, is published to ``reply_to`` (a handler's subject, so it survives restarts).
        """
        if classification not in CLASSIFICATIONS:
            raise ValueError(f"classification {classification!r} is not one of {CLASSIFICATIONS}")
        msg_id = msg_id or f"{self.name}-{uuid.uuid4().hex}"
        headers = {HEADER_MSG_ID: msg_id, HEADER_CLASS: classification}
        if reply_to:
            headers[HEADER_REPLY_TO] = reply_to
        subject = outbound_subject(capability)
        attributes = {"rbridge.capability": capability, "rbridge.classification": classification}
        with tracing.span(
            f"send_cloud {capability}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            tracing.inject(headers)
            await self._store_outbound(subject, payload, headers)
        return msg_id

    async def _store_outbound(
        self, subject: str, payload: Mapping[str, Any] | bytes, headers: dict[str, str]
    ) -> None:
        """Store in RB_OUT, trying again (the message id makes it once) while NATS cannot take
        it for the moment, up to ``failover_seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.failover_seconds
        data, pause = encode(payload), 0.1
        while True:
            wait = max(0.5, min(5.0, deadline - loop.time()))
            try:
                await self.nc.jetstream().publish(subject, data, headers=headers, timeout=wait)
                return
            except NoStreamResponseError:
                # No stream answered: none set up, or (in a cluster) none leads RB_OUT just now.
                reason = "no RB_OUT stream (is the edge bridge set up?)"
            except (NatsTimeout, TimeoutError, NoRespondersError):
                reason = "the local NATS did not store the message"
            except APIError as error:
                reason = f"the local NATS refused the message ({error.description})"
                full = "maximum" in (error.description or "")  # RB_OUT at its bound
                if full:
                    reason += (
                        ": the bridge's outbound store is full until the cloud catches up; "
                        "nothing stored was dropped, send again later"
                    )
                if full or error.code != 503:  # only "temporarily unavailable" is retried
                    raise Unavailable(subject, reason) from None
            if loop.time() + pause > deadline:
                raise Unavailable(subject, reason) from None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def ask_cloud(
        self,
        capability: str,
        payload: Mapping[str, Any] | bytes,
        *,
        classification: str = "confidential",
        timeout: float = 30.0,
        msg_id: str | None = None,
    ) -> Any:
        """Send through the bridge and wait for the cloud's reply, re-identified on-prem.

        Raises :class:`Denied` (with the rule and reason the bridge gave), :class:`TimedOut`,
        :class:`Unavailable`, or :class:`HandlerFailed` when the cloud agent failed for good.
        After a timeout the message may still be delivered later; its reply is then dropped.
        """
        with tracing.span(f"ask_cloud {capability}", kind=SpanKind.CLIENT) as current:
            answer = await self._ask_cloud(capability, payload, classification, timeout, msg_id)
            headers = answer.headers or {}
            if current is not None and headers.get(HEADER_STATUS) == "denied":
                current.set_attribute("rbridge.verdict", "deny")
        if headers.get(HEADER_STATUS) == "denied":
            raise Denied(
                capability,
                headers.get(HEADER_RULE, ""),
                headers.get(HEADER_REASON, ""),
                headers.get(HEADER_DETAIL, ""),
            )
        return _answer(capability, answer)

    async def _ask_cloud(
        self,
        capability: str,
        payload: Mapping[str, Any] | bytes,
        classification: str,
        timeout: float,
        msg_id: str | None,
    ) -> Msg:
        token = uuid.uuid4().hex
        waiting = _Waiting(asyncio.get_running_loop().create_future(), capability)
        self._waiting[token] = waiting
        self.stats.asked += 1
        try:
            await self.send_cloud(
                capability,
                payload,
                classification=classification,
                reply_to=f"{self._inbox}.{token}",
                msg_id=msg_id,
            )
            try:
                answer = await asyncio.wait_for(waiting.future, timeout)
            except TimeoutError:
                raise TimedOut(outbound_subject(capability), timeout) from None
        finally:
            self._waiting.pop(token, None)
        return answer

    async def _on_answer(self, message: Msg) -> None:
        waiting = self._waiting.get(message.subject.rsplit(".", 1)[-1])
        if waiting is None or waiting.future.done():
            return
        headers = message.headers or {}
        received = waiting.ask and headers.get(HEADER_ASK_RECEIVED)
        if received:  # an ask's receipt; its answer is still to come
            # Repeats go only to an agent instance's own inbox, never to a subject a forged
            # receipt names (the cloud's outbound subjects, a wildcard).
            waiting.received = True
            waiting.again_to = received if repeats_subject(received) else None
            self._receipting.add(waiting.capability)
            waiting.poke()  # the asker checks on the ask from now on
            return
        if waiting.ask and HEADER_ASK_ANSWERED in headers:  # its agents send receipts
            self._receipting.add(waiting.capability)
        waiting.future.set_result(message)
        waiting.poke()


class DelegationFailed(AgentError):
    """Some sub-tasks of :meth:`Agent.delegate` failed: ``answers`` and ``errors`` by name."""

    def __init__(self, answers: dict[str, Any], errors: dict[str, AgentError]) -> None:
        self.answers, self.errors = answers, errors
        failed = ", ".join(f"{name}: {error}" for name, error in errors.items())
        super().__init__(
            f"{len(errors)} of {len(answers) + len(errors)} sub-tasks failed ({failed})"
        )


def _ask_key(message: Msg) -> tuple[str, str] | None:
    """An ask sent with an id (by this SDK's ``ask``): remembered by reply subject and id."""
    ask_id = (message.headers or {}).get(HEADER_ASK_ID)
    if not ask_id or not message.reply or len(ask_id) > MAX_ASK_ID:
        return None
    return (message.reply, ask_id)


def _answer(subject: str, message: Msg) -> Any:
    headers = message.headers or {}
    if HEADER_AGENT_ERROR in headers:
        raise HandlerFailed(subject, headers[HEADER_AGENT_ERROR])
    if not message.data:
        return None
    try:
        return orjson.loads(message.data)
    except orjson.JSONDecodeError:
        raise HandlerFailed(subject, "the answer is not JSON") from None
