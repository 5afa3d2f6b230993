"""Answers to the bridge's own requests (JetStream's PubAcks), read straight off the wire.

Every message the gateway stores in ``RB_IN`` is answered by a PubAck. nats-py hands each one
over as a message object with parsed headers, through the subscription's queue and task, and
into a coroutine callback: about as much CPU as the store itself. Here the connection's reader
gives the answers of a subscription made with :func:`subscribe_answers` to a plain function at
once (subject, payload, and the inline status of a control reply such as 503 no responders),
and everything else to nats-py as before. The hook uses a private method of nats-py's client;
where a release no longer has it, the answers take the ordinary callback path (slower, the
same results).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger("rbridge.nats")

Answer = Callable[[str, bytes, "str | None"], None]
"""Called with the subject, the payload and the inline status ("503"), if any."""

HOOK = hasattr(Client, "_process_msg")
"""Whether this nats-py's reader can hand answers over directly (else through callbacks)."""

_ROUTES = "_rbridge_answer_routes"


def _status(headers: bytes | None) -> str | None:
    """The inline status of a header block (``NATS/1.0 503``), as nats-py reads it."""
    if headers and headers[8:9] == b" ":
        code = headers[9:12]
        if code.isdigit():
            return code.decode()
    return None


def _hand_over(answer: Answer, subject: str, data: bytes, status: str | None) -> None:
    try:
        answer(subject, data, status)
    except Exception as error:  # never break the connection's reader
        log.warning("an answer could not be handled: %s", type(error).__name__)


def _routes(nc: Client) -> dict[int, Answer]:
    """The connection's answer routes by subscription id, hooking its reader the first time."""
    routes: dict[int, Answer] | None = nc.__dict__.get(_ROUTES)
    if routes is None:
        routes = {}
        original = nc._process_msg
        stats = nc.stats

        async def process(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
        ) -> Any:
            answer = routes.get(sid)
            if answer is None:
                return await original(sid, subject, reply, data, headers)
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            _hand_over(answer, subject.decode(), data, _status(headers))
            return None

        nc._process_msg = process  # type: ignore[method-assign]
        setattr(nc, _ROUTES, routes)
    return routes


async def subscribe_answers(nc: Client, subject: str, answer: Answer) -> Subscription:
    """Subscribe to ``subject`` (the bridge's own inbox) with ``answer`` called for each message;
    :func:`unsubscribe_answers` ends it."""

    async def through_nats_py(message: Msg) -> None:
        status = (message.headers or {}).get("Status")
        _hand_over(answer, message.subject, message.data, status)

    subscription = await nc.subscribe(subject, cb=through_nats_py)
    if HOOK:
        _routes(nc)[subscription._id] = answer
    return subscription


async def unsubscribe_answers(nc: Client, subscription: Subscription) -> None:
    routes: dict[int, Answer] | None = nc.__dict__.get(_ROUTES)
    if routes is not None:
        routes.pop(subscription._id, None)
    await subscription.unsubscribe()
