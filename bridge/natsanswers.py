"""Answers to the bridge's own requests (JetStream's PubAcks), read straight off the wire.

Every message the gateway stores in ``RB_IN`` is answered by a PubAck. nats-py hands each one
over as a message object with parsed headers, through the subscription's queue and task, and
into a coroutine callback: about as much CPU as the store itself. Here the connection's reader
gives the answers of a subscription made with :func:`subscribe_answers` to a plain function at
once (subject, payload, and the inline status of a control reply such as 503 no responders),
and everything else to nats-py as before. The hook uses a private method of nats-py's client;
where a release no longer has it, the answers take the ordinary callback path (slower, the
same results). See :mod:`bridge.natsread`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bridge import natsread

log = logging.getLogger("rbridge.nats")

Answer = Callable[[str, bytes, "str | None"], None]
"""Called with the subject, the payload and the inline status ("503"), if any."""


def _hand_over(answer: Answer, subject: str, data: bytes, status: str | None) -> None:
    try:
        answer(subject, data, status)
    except Exception as error:  # never break the connection's reader
        log.warning("an answer could not be handled: %s", type(error).__name__)


async def subscribe_answers(nc: Client, subject: str, answer: Answer) -> Subscription:
    """Subscribe to ``subject`` (the bridge's own inbox) with ``answer`` called for each message;
    :func:`unsubscribe_answers` ends it."""

    async def through_nats_py(message: Msg) -> None:
        status = (message.headers or {}).get("Status")
        _hand_over(answer, message.subject, message.data, status)

    def off_the_wire(subject: bytes, _reply: bytes, data: bytes, headers: bytes) -> bool:
        _hand_over(answer, subject.decode(), data, natsread.status_of(headers))  # UTF-8 (guard)
        return True

    subscription = await nc.subscribe(subject, cb=through_nats_py)
    if natsread.HOOK:
        natsread.route(nc, subscription._id, off_the_wire)
    return subscription


async def unsubscribe_answers(nc: Client, subscription: Subscription) -> None:
    natsread.unroute(nc, subscription._id)
    await subscription.unsubscribe()
