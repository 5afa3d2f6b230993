"""The runtimes' NATS connection: their configured credentials, reconnecting for ever once up.

One connection routine serves the runtimes, the agent SDKs and the tools
(:mod:`bridge.natsconnect`); this adds the runtimes' connection-state log lines.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.aio.client import Client

from bridge.natsconnect import NatsConnectError, NatsIdentity
from bridge.natsconnect import connect as connect_as

log = logging.getLogger("rbridge.nats")

__all__ = ["NatsConnectError", "connect"]


async def connect(
    url: str,
    *,
    credentials: Path | None = None,
    nkey_seed: Path | None = None,
    name: str = "rbridge",
    timeout: float = 20.0,
    on_lost: Callable[[], None] | None = None,
    on_back: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """Connect within ``timeout`` or raise :class:`NatsConnectError` saying why; once connected,
    a lost connection is retried for ever (the bridge waits rather than drops anything).
    ``on_lost`` and ``on_back`` are called when the connection drops and when it is back."""

    async def disconnected() -> None:
        log.warning("NATS connection lost; reconnecting")
        if on_lost is not None:
            on_lost()

    async def reconnected() -> None:
        log.info("NATS connection restored")
        if on_back is not None:
            await on_back()

    return await connect_as(
        NatsIdentity(url, nkey_seed, credentials),
        name=name,
        timeout=timeout,
        hint="check nats.nkey_seed or nats.credentials in the settings",
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
    )
