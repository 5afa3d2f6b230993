"""Connecting to NATS with the configured credentials, reconnecting forever."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

log = logging.getLogger("rbridge.nats")


async def connect(
    url: str,
    *,
    credentials: Path | None = None,
    nkey_seed: Path | None = None,
    name: str = "rbridge",
) -> Client:
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

    async def disconnected() -> None:
        log.warning("NATS connection lost; reconnecting")

    async def reconnected() -> None:
        log.info("NATS connection restored")

    async def error(problem: Exception) -> None:
        log.warning("NATS error: %s", type(problem).__name__)

    return await nats.connect(
        **options, disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error
    )
