"""Connecting to NATS with the configured credentials: fail clearly at first, reconnect forever after."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from bridge.cancellation import within
from bridge.errors import RbridgeError

log = logging.getLogger("rbridge.nats")


class NatsConnectError(RbridgeError):
    """The first connection to NATS did not succeed in time (wrong URL, credentials, server down)."""

    retriable = True


async def connect(
    url: str,
    *,
    credentials: Path | None = None,
    nkey_seed: Path | None = None,
    name: str = "rbridge",
    timeout: float = 20.0,
) -> Client:
    """Connect within ``timeout`` or raise :class:`NatsConnectError` saying why; once connected,
    a lost connection is retried for ever (the bridge waits rather than drops anything)."""
    options: dict[str, Any] = {
        "servers": [url],
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "allow_reconnect": True,
    }
    if credentials is not None:
        options["user_credentials"] = str(credentials)
    if nkey_seed is not None:
        options["nkeys_seed"] = str(nkey_seed)
    problems: list[str] = []

    async def disconnected() -> None:
        log.warning("NATS connection lost; reconnecting")

    async def reconnected() -> None:
        log.info("NATS connection restored")

    async def error(problem: Exception) -> None:
        text = str(problem) or type(problem).__name__
        # What the server said (e.g. an authorization violation) explains more than the
        # connection reset that follows it: keep it first.
        if isinstance(problem, nats.errors.Error) and not isinstance(
            problem, nats.errors.UnexpectedEOF
        ):
            problems.insert(0, text)
        else:
            problems.append(text)
        log.warning("NATS error: %s", type(problem).__name__)

    try:
        return await within(
            nats.connect(
                **options, disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error
            ),
            timeout,
            "connection",
        )
    except (TimeoutError, OSError, nats.errors.Error) as failure:
        reason = problems[0] if problems else (str(failure) or type(failure).__name__)
        raise NatsConnectError(f"cannot connect to NATS at {url}: {reason[:200]}") from None
