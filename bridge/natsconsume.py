"""Messages of a durable JetStream pull consumer as they arrive, without polling.

The one consumer loop of the bridge and the SDKs (the edge on ``RB_OUT``, the gateway's reply
pumps on ``RB_REPLY``, cloud agents on ``RB_IN``), built the way the newer NATS clients
"consume": standing pull requests. One request asks for up to ``batch`` messages and stands for
``expires`` seconds with server idle heartbeats; the server delivers each message the moment it
is stored, so a message that arrives alone leaves at once and a burst comes in as one batch.
Another request is sent as soon as half of what was asked for has been handed out. At idle, one
request per ``expires`` and one heartbeat per ``heartbeat`` cross the wire (a fetch loop asked
the server every few milliseconds). When neither a message nor a heartbeat arrives for two
heartbeats (a server restart, a reconnect, a consumer recreated), the outstanding requests are
written off and asked for again.

Accounting: what was asked for and not yet delivered, plus what was delivered and not yet taken
by :meth:`PullConsumer.take`, never exceeds ``batch``; a slow processor therefore holds back the
server instead of piling messages up here.

The messages are read off the wire (:mod:`bridge.natsread`): the connection's reader hands each
one to the consumer as it parses it, with nats-py's own header reading, as nats-py's message
object; the inline statuses (heartbeats, the ends of requests) take nats-py's ordinary path.
:func:`settle_many` acks, naks and terms a batch with one wake of the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bridge import natspublish, natsread
from bridge.errors import RbridgeError

log = logging.getLogger("rbridge.consume")

_STATUS = "Status"
_PENDING_MESSAGES = "Nats-Pending-Messages"
_HEARTBEAT = "100"
_NO_MESSAGES = "404"
_TIMEOUT = "408"
_CONFLICT = "409"
_NO_RESPONDERS = "503"


class ConsumerLost(RbridgeError):
    """The server no longer has the durable consumer (deleted, or lost with its state)."""

    retriable = True


def _plain(name: object) -> str:
    """A header name as text: nats-py keys a status's description by an enum member."""
    return str(getattr(name, "value", name))


def _description(headers: dict[str, str]) -> str:
    return next((str(v) for k, v in headers.items() if _plain(k) == "Description"), "")


class PullConsumer:
    """Standing pull requests on one durable consumer; :meth:`take` returns what has arrived."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        durable: str,
        *,
        batch: int = 256,
        expires: float = 30.0,
        heartbeat: float = 5.0,
        api_prefix: str = "$JS.API",
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        if not 0 < heartbeat * 2 < expires:
            raise ValueError("expires must be more than twice the heartbeat")
        self.nc = nc
        self.batch = batch
        self.expires = expires
        self.heartbeat = heartbeat
        self.subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._buffer: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._asked = 0  # asked for, not yet delivered (as far as we know)
        self._paused = False
        self._closed = False
        self._inbox = ""
        self._subscription: Subscription | None = None
        self._sid = 0
        self._watch: asyncio.Task[None] | None = None
        self._last_heard = 0.0
        self._last_request = 0.0
        self.stream, self.durable = stream, durable
        #: Why the consumer is gone (deleted, or no such consumer), once the server said so.
        self.lost = ""
        #: Pull requests sent, heartbeats received, requests written off (for tests and metrics).
        self.requests = 0
        self.heartbeats = 0
        self.resets = 0

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._subscription = await self.nc.subscribe(self._inbox, cb=self._on_message)
        self._sid = self._subscription._id
        if natsread.HOOK:
            natsread.route(self.nc, self._sid, self._off_the_wire)
        self._last_heard = time.monotonic()
        await self._ask()
        self._watch = asyncio.create_task(self._watch_heartbeats(), name="consume-heartbeats")

    def close(self) -> None:
        """Stop asking and wake :meth:`take` (which returns an empty list from now on)."""
        self._closed = True
        self._arrived.set()

    async def stop(self) -> None:
        """Close, and stop listening; what arrived and was not taken is left to
        :meth:`release` (or to redelivery)."""
        self.close()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._subscription is not None:
            natsread.unroute(self.nc, self._sid)
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    def pause(self) -> None:
        """Ask for nothing more (messages of requests already standing still arrive)."""
        self._paused = True

    async def resume(self) -> None:
        if self._paused:
            self._paused = False
            await self._ask()

    # --- taking messages -------------------------------------------------------------------

    async def take(self, limit: int | None = None) -> list[Msg]:
        """Everything that has arrived (up to ``limit``), waiting only while nothing has; an
        empty list once stopped.

        Raises :class:`ConsumerLost` once the server says the consumer is gone (its caller makes
        it again and starts a new one).
        """
        while not self._buffer and not self._closed and not self.lost:
            self._arrived.clear()
            await self._arrived.wait()
        if self.lost and not self._buffer:
            raise ConsumerLost(f"consumer {self.durable} of {self.stream}: {self.lost}")
        count = len(self._buffer) if limit is None else min(limit, len(self._buffer))
        taken = [self._buffer.popleft() for _ in range(count)]
        if taken:
            await self._ask()
        return taken

    def release(self) -> list[Msg]:
        """What has arrived and was not taken, handed back to the caller to settle (a paused
        consumer's caller naks it, rather than hold it past ``ack_wait``)."""
        released = list(self._buffer)
        self._buffer.clear()
        return released

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # --- the wire --------------------------------------------------------------------------

    async def _ask(self) -> None:
        """Ask for as many as keeps the total at ``batch``, once at most half is outstanding."""
        outstanding = self._asked + len(self._buffer)
        if self._paused or self._closed or self.lost or outstanding > self.batch // 2:
            return
        wanted = self.batch - outstanding
        request = {
            "batch": wanted,
            "expires": int(self.expires * 1e9),
            "idle_heartbeat": int(self.heartbeat * 1e9),
        }
        try:
            await self.nc.publish(self.subject, orjson.dumps(request), reply=self._inbox)
        except Exception as error:  # disconnected: the heartbeat watch asks again
            log.debug("pull request not sent: %s", type(error).__name__)
            return
        self._asked += wanted
        self.requests += 1
        self._last_request = time.monotonic()

    def _deliver(self, message: Msg) -> None:
        self._last_heard = time.monotonic()
        if self._asked:
            self._asked -= 1
        self._buffer.append(message)
        self._arrived.set()

    def _off_the_wire(self, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> bool:
        """A message as the connection's reader parsed it; one with an inline status line (a
        heartbeat, the end of a request, or a publisher's imitation of one: rare) is left to
        nats-py's reading and :meth:`_on_message`."""
        if headers and natsread.has_status(headers):
            return False
        self._deliver(
            Msg(
                _client=self.nc,
                subject=subject.decode(),  # UTF-8 by now: natsread's guard comes first
                reply=reply.decode(),
                data=data,
                headers=natsread.parse_headers(headers) if headers else None,
                _sid=self._sid,
            )
        )
        return True

    async def _on_message(self, message: Msg) -> None:
        headers = message.headers
        status = headers.get(_STATUS) if headers else None
        if status is None or message.reply:
            # A stored message has the subject its ack goes to; the server's statuses on a pull
            # request's inbox have none. A header block that starts with a status line is the
            # publisher's doing: the message is delivered (its keys plain strings) like any other.
            if headers and status is not None:
                message.headers = {_plain(k): v for k, v in headers.items()}
            self._deliver(message)
            return
        self._last_heard = time.monotonic()
        if status == _HEARTBEAT:
            self.heartbeats += 1
            return
        # 404/408: a request ended (expired, or nothing to wait for); 409: the server ended it
        # (too many waiting, consumer deleted, leadership changed). It says how many of what it
        # was asked for are now not coming.
        assert headers is not None
        ended = headers.get(_PENDING_MESSAGES)
        if ended is not None and ended.isdigit():
            self._asked = max(0, self._asked - int(ended))
        elif status in (_NO_MESSAGES, _TIMEOUT, _CONFLICT):
            self._asked = 0
        description = _description(headers)
        if status == _NO_RESPONDERS or (status == _CONFLICT and "deleted" in description.lower()):
            # The consumer is gone (deleted, or never there): asking again cannot help.
            self.lost = "deleted" if status == _CONFLICT else "no such consumer"
            self._arrived.set()
            return
        if status == _CONFLICT:
            log.info("pull request ended by the server: %s", description)
        await self._ask()

    async def _watch_heartbeats(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.heartbeat)
            now = time.monotonic()
            silent = now - self._last_heard > 2 * self.heartbeat
            expired = now - self._last_request > self.expires + self.heartbeat
            if self._asked and (silent or expired) and not self._paused:
                # Neither a message nor a heartbeat: the requests were lost (a server restart,
                # a reconnect, the consumer recreated). Ask again.
                self._asked = 0
                self.resets += 1
                self._last_heard = now
            await self._ask()  # also when nothing is asked for (a failed publish, say)


# The bytes nats-py's Msg.ack, nak and term send.
_SETTLE = {"ack": Msg.Ack.Ack, "nak": Msg.Ack.Nak, "term": Msg.Ack.Term}


async def settle_many(nc: Client, settled: Sequence[tuple[str, Msg, float | None]]) -> None:
    """Send ("ack" | "nak" | "term", message, nak delay) for each message of a pull consumer
    on ``nc``, with one wake of the connection: the bytes nats-py's ``Msg.ack``, ``nak`` and
    ``term`` send, one publish each. A message already settled, or not from JetStream, is
    left out. Raises what publishing raises (a closed connection: nothing is marked settled).
    """
    frames: list[natspublish.Message] = []
    marked: list[Msg] = []
    for kind, message, delay in settled:
        if not message.reply or message._ackd:
            continue
        payload = _SETTLE[kind]
        if delay:
            payload += b' {"delay": %d}' % int(delay * 1e9)
        frames.append((message.reply, payload, None, ""))
        message._ackd = True  # (a second settling in this batch is left out)
        marked.append(message)
    if not frames:
        return
    try:
        await natspublish.publish_many(nc, frames)
    except BaseException:
        for message in marked:
            message._ackd = False
        raise


async def keep_in_progress(nc: Client, held: Callable[[], Iterable[Msg]], *, every: float) -> None:
    """Every ``every`` seconds, tell the server that each message ``held()`` yields (taken, sent
    on, not yet settled) is still being worked on. With it a consumer can run with a short
    ``ack_wait``: the messages of a consumer that died come back within seconds, while those a
    live one holds (a cloud agent that takes its time, a link that is reconnecting) do not."""
    while True:
        await asyncio.sleep(every)
        try:
            await natspublish.publish_many(
                nc, [(m.reply, Msg.Ack.Progress, None, "") for m in list(held()) if m.reply]
            )
        except Exception as error:  # disconnected: the next round, or redelivery, covers it
            log.debug("in-progress not sent: %s", type(error).__name__)
