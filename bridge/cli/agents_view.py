"""``rbridge agents``: the supervisor's view of on-prem agents, from their heartbeats."""

from __future__ import annotations

import asyncio
from typing import TextIO

import nats
import orjson
from nats.errors import Error as NatsError

from bridge.errors import RbridgeError
from edge_agent import agent_statuses


class AgentsUnavailable(RbridgeError):
    retriable = True


async def show(url: str, *, as_json: bool, out: TextIO) -> int:
    problems: list[str] = []

    async def failed(error: Exception) -> None:
        # Instead of nats-py's default, which logs a traceback for every attempt.
        problems.append(type(error).__name__)

    try:
        connection = await asyncio.wait_for(
            nats.connect(url, connect_timeout=3, allow_reconnect=False, error_cb=failed), 5
        )
    except (OSError, NatsError, TimeoutError) as error:
        why = problems[-1] if problems else type(error).__name__
        raise AgentsUnavailable(f"cannot connect to NATS at {url}: {why}") from None
    try:
        statuses = await agent_statuses(connection)
    finally:
        await connection.close()
    # Exit 1 when an agent went silent, so a monitor can alert on it.
    code = 1 if any(s.state == "silent" for s in statuses) else 0
    if as_json:
        for status in statuses:
            out.write(orjson.dumps(status).decode() + "\n")
        return code
    if not statuses:
        out.write("no agents have announced themselves on this NATS\n")
        return 0
    out.write(
        f"{'AGENT':<20} {'INSTANCE':<36} {'STATE':<8} {'SEEN':>7} {'HANDLED':>8} {'DEAD':>5}  SUBJECTS\n"
    )
    for s in statuses:
        out.write(
            f"{s.agent:<20} {s.instance:<36} {s.state:<8} {s.last_seen_seconds:>6.0f}s "
            f"{s.handled:>8} {s.dead_lettered:>5}  {', '.join(s.subjects)}\n"
        )
    return code
