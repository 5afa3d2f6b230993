"""What the two agent SDKs share: dead-letter headers, key-value buckets, serving until a signal.

The SDKs differ where their transports do, and only there. An on-prem agent (``edge_agent``)
serves core NATS requests: a failing handler is retried in the process (``max_attempts``, with
a growing delay) because core NATS would not deliver the request again. A cloud agent
(``cloud_agent``) consumes ``RB_IN`` through JetStream: a failing handler's message is nak'ed
and JetStream redelivers it (the attempt is the message's delivery count), so a crashed agent
loses nothing. Both dead-letter a message that failed ``max_attempts`` times to
``rb.agents.dead.<agent>`` with the same headers, and both stop on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Mapping
from typing import TypeVar

from nats.js import JetStreamContext, api
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

from bridge.contract import HEADER_AGENT_ERROR

H = TypeVar("H")

HEADER_AGENT_SUBJECT = "Agent-Subject"
HEADER_AGENT_ATTEMPTS = "Agent-Attempts"


def check_agent_name(name: str) -> str:
    """An agent's name is one subject token (it names its dead letters, consumers and buckets).

    Raises ValueError naming the name otherwise.
    """
    if not name or any(char in name for char in ".*> \t\r\n"):
        raise ValueError(f"agent name {name!r} must be one subject token (no '.', '*', '>')")
    return name


def registrar(handlers: dict[str, H], what: str) -> Callable[[str], Callable[[H], H]]:
    """The decorator both SDKs register handlers with: one handler per ``what``."""

    def for_key(key: str) -> Callable[[H], H]:
        def register(handler: H) -> H:
            if key in handlers:
                raise ValueError(f"{what} {key!r} already has a handler")
            handlers[key] = handler
            return handler

        return register

    return for_key


def dead_letter_headers(
    headers: Mapping[str, str], *, error: str, subject: str, attempts: int, **extra: str
) -> dict[str, str]:
    """The message's own headers (without ``Nats-*``) and why it was given up."""
    dead = {name: value for name, value in headers.items() if not name.startswith("Nats-")}
    dead.update(
        {
            HEADER_AGENT_ERROR: error,
            HEADER_AGENT_SUBJECT: subject,
            HEADER_AGENT_ATTEMPTS: str(attempts),
        }
    )
    dead.update(extra)
    return dead


async def bucket(js: JetStreamContext, name: str, *, ttl: float, replicas: int = 1) -> KeyValue:
    """The key-value bucket ``name`` (one value per key, entries expiring after ``ttl``),
    created with ``replicas`` copies if it does not exist yet."""
    try:
        return await js.key_value(name)
    except JetStreamError:
        return await js.create_key_value(
            api.KeyValueConfig(bucket=name, history=1, ttl=ttl, replicas=replicas)
        )


async def until_signalled(*stopped: asyncio.Event) -> None:
    """Return on SIGTERM or SIGINT, or once any of ``stopped`` is set."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, signalled.set)
    waiters = [asyncio.create_task(event.wait()) for event in (signalled, *stopped)]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)
