"""``rbridge agents``: the supervisor's view of on-prem agents, from their heartbeats."""

from __future__ import annotations

from typing import TextIO

import orjson

from bridge.natsconnect import AGENT_IDENTITY_HINT, NatsIdentity, connect
from edge_agent import agent_statuses


async def show(identity: NatsIdentity, *, as_json: bool, out: TextIO) -> int:
    async def quiet(_error: Exception) -> None:
        pass  # the connection error says what went wrong, once

    connection = await connect(
        identity, name="rbridge-agents", timeout=5, reconnect=False,
        hint=AGENT_IDENTITY_HINT, on_error=quiet,
    )  # fmt: skip
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
