"""Connecting to NATS, one way for the runtimes, the agent SDKs and the command-line tools.

The first connection fails clearly within a timeout, naming the server's reason (an
authorization violation says more than the reset that follows it) and, when the server refused
the credentials, what to pass; once connected, a lost connection is retried for ever.

Agents and the ``rbridge`` commands that act as an agent take their NATS identity the same way
everywhere: ``--nats URL`` / ``RBRIDGE_AGENT_NATS_URL``, ``--nkey FILE`` / ``RBRIDGE_AGENT_NKEY``
(a file holding an nkey seed, as ``rbridge nats nkeys`` writes ``agents.nk``) and
``--creds FILE`` / ``RBRIDGE_AGENT_CREDS`` (a NATS credentials file).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from bridge import natsread
from bridge.cancellation import within
from bridge.errors import RbridgeError

log = logging.getLogger("rbridge.nats")

ENV_URL = "RBRIDGE_AGENT_NATS_URL"
ENV_NKEY = "RBRIDGE_AGENT_NKEY"
ENV_CREDS = "RBRIDGE_AGENT_CREDS"
DEFAULT_URL = "nats://127.0.0.1:4222"
AGENT_IDENTITY_HINT = (
    f"pass the agents' nkey (--nkey FILE or {ENV_NKEY}, e.g. /etc/rbridge/nkeys/agents.nk) "
    f"or a credentials file (--creds FILE or {ENV_CREDS})"
)


def shown_url(url: str) -> str:
    """A server URL (or a comma-separated list of them) as logs may show it: any user name or
    password in it replaced by ``***``."""
    if "," in url:
        return ",".join(shown_url(one.strip()) for one in url.split(","))
    scheme, separator, rest = url.rpartition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{separator}***@{rest.rsplit('@', 1)[1]}"


def server_list(url: str) -> list[str]:
    """The servers of ``url``: one URL, or several separated by commas (the members of a
    cluster; a client connects to any and moves to another when it goes)."""
    return [one.strip() for one in url.split(",") if one.strip()]


def replicas_for(nc: Client, wanted: int | None) -> int:
    """How many replicas a stream or bucket gets: ``wanted``, else 3 when the server the client
    is connected to is in a cluster and 1 when it is alone."""
    if wanted is not None:
        return wanted
    info = getattr(nc, "_server_info", None) or {}
    return 3 if info.get("cluster") else 1


class NatsConnectError(RbridgeError):
    """The first connection to NATS did not succeed in time (wrong URL, credentials, server down)."""

    retriable = True

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot connect to NATS at {shown_url(url)}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NatsIdentity:
    """Where a client connects and who it says it is."""

    url: str = DEFAULT_URL
    nkey_seed: Path | None = None
    credentials: Path | None = None

    @classmethod
    def for_agents(
        cls,
        url: str | None = None,
        nkey_seed: str | Path | None = None,
        credentials: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> NatsIdentity:
        """What is given, else the agents' environment variables, else the local default."""
        env = os.environ if environ is None else environ
        seed = nkey_seed if nkey_seed is not None else env.get(ENV_NKEY) or None
        creds = credentials if credentials is not None else env.get(ENV_CREDS) or None
        return cls(
            url or env.get(ENV_URL) or DEFAULT_URL,
            Path(seed) if seed else None,
            Path(creds) if creds else None,
        )

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.nkey_seed is not None:
            options["nkeys_seed"] = str(self.nkey_seed)
        if self.credentials is not None:
            options["user_credentials"] = str(self.credentials)
        return options

    def check(self) -> None:
        """Raise :class:`NatsConnectError` if a named identity file cannot be read."""
        for label, path in (("nkey seed", self.nkey_seed), ("credentials", self.credentials)):
            if path is None:
                continue
            try:
                with open(path, "rb"):
                    pass
            except OSError as error:
                raise NatsConnectError(
                    self.url, f"cannot read the {label} file {path}: {error.strerror}"
                ) from None


def add_identity_arguments(parser: argparse.ArgumentParser) -> None:
    """``--nats``, ``--nkey`` and ``--creds``, defaulting to the agents' environment variables."""
    parser.add_argument(
        "--nats",
        metavar="URL",
        default=None,
        help=f"NATS server (default: ${ENV_URL} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--nkey", metavar="FILE", default=None, help=f"nkey seed file (default: ${ENV_NKEY})"
    )
    parser.add_argument(
        "--creds",
        metavar="FILE",
        default=None,
        help=f"NATS credentials file (default: ${ENV_CREDS})",
    )


def identity_from(arguments: argparse.Namespace) -> NatsIdentity:
    return NatsIdentity.for_agents(arguments.nats, arguments.nkey, arguments.creds)


def _is_authorization(text: str) -> bool:
    lowered = text.lower()
    return (
        "authorization" in lowered or "authentication" in lowered or "user credentials" in lowered
    )


#: Seconds between the client's pings, and how many may go unanswered before it reconnects.
PING_INTERVAL = 5
MAX_OUTSTANDING_PINGS = 3


async def connect(
    identity: NatsIdentity,
    *,
    name: str = "rbridge",
    timeout: float = 20.0,
    reconnect: bool = True,
    hint: str = "",
    on_error: Callable[[Exception], Awaitable[None]] | None = None,
    **extra: Any,
) -> Client:
    """Connect within ``timeout`` or raise :class:`NatsConnectError` saying why (with ``hint``
    when the server refused the credentials); once connected, reconnect for ever unless
    ``reconnect`` is False."""
    identity.check()
    problems: list[str] = []

    async def error(problem: Exception) -> None:
        text = str(problem) or type(problem).__name__
        # What the server said explains more than the connection reset that follows it.
        if isinstance(problem, nats.errors.Error) and not isinstance(
            problem, nats.errors.UnexpectedEOF
        ):
            problems.insert(0, text)
        else:
            problems.append(text)
        if on_error is not None:
            await on_error(problem)
        else:
            log.warning("NATS error: %s", type(problem).__name__)

    options: dict[str, Any] = {
        "servers": server_list(identity.url),
        "name": name,
        "max_reconnect_attempts": -1 if reconnect else 0,
        "allow_reconnect": reconnect,
        "reconnect_time_wait": 0.5,
        # A server that hangs rather than dies (host frozen, network cut without a reset) keeps
        # the connection open: unanswered pings tell, within about 20 s instead of minutes.
        "ping_interval": PING_INTERVAL,
        "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
        "connect_timeout": min(5.0, timeout),
        "error_cb": error,
        **identity.options(),
        **extra,
    }
    try:
        nc = await within(nats.connect(**options), timeout, "connection")
    except (TimeoutError, OSError, nats.errors.Error) as failure:
        reason = problems[0] if problems else (str(failure) or type(failure).__name__)
        reason = reason.strip()[:200]
        if _is_authorization(reason):
            reason = f"authorization refused ({reason})" + (f"; {hint}" if hint else "")
        raise NatsConnectError(identity.url, reason) from None
    natsread.guard(nc)  # no message can stop its reader
    return nc
