"""The supervisor's view: which agents are live, which went silent, which stopped.

Reads the heartbeats agents write to the ``rb_agents`` bucket (see :mod:`edge_agent.heartbeat`).
An instance is *silent* when its last heartbeat is older than three of its intervals: it crashed,
hangs, or lost its NATS connection.

>>> async def show(nc: Client) -> None:
...     for status in await agent_statuses(nc):
...         print(status.agent, status.instance, status.state, status.subjects)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import orjson
from nats.aio.client import Client
from nats.js.errors import NoKeysError

from edge_agent.heartbeat import agents_bucket

#: Missing this many heartbeats in a row makes an instance silent.
SILENT_AFTER_INTERVALS = 3

State = Literal["live", "silent", "stopped"]


@dataclass(frozen=True, slots=True)
class AgentStatus:
    agent: str
    instance: str
    state: State
    subjects: tuple[str, ...]
    last_seen_seconds: float
    handled: int
    failed_attempts: int
    dead_lettered: int


async def agent_statuses(nc: Client, *, now: float | None = None) -> list[AgentStatus]:
    """Every agent instance that sent a heartbeat in the last day, live ones first."""
    bucket = await agents_bucket(nc.jetstream())
    try:
        keys = await bucket.keys()
    except NoKeysError:
        return []
    now = time.time() if now is None else now
    statuses = []
    for key in keys:
        entry = await bucket.get(key)
        if not entry.value:
            continue
        try:
            record = orjson.loads(entry.value)
            age = max(0.0, now - float(record["at"]))
            if record.get("stopped"):
                state: State = "stopped"
            elif age > SILENT_AFTER_INTERVALS * float(record["interval"]):
                state = "silent"
            else:
                state = "live"
            statuses.append(
                AgentStatus(
                    agent=str(record["agent"]),
                    instance=str(record["instance"]),
                    state=state,
                    subjects=tuple(str(s) for s in record.get("subjects", ())),
                    last_seen_seconds=age,
                    handled=int(record.get("handled", 0)),
                    failed_attempts=int(record.get("failed_attempts", 0)),
                    dead_lettered=int(record.get("dead_lettered", 0)),
                )
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # not a heartbeat this SDK wrote: ignore rather than guess
    order = {"live": 0, "silent": 1, "stopped": 2}
    return sorted(statuses, key=lambda s: (order[s.state], s.agent, s.instance))
