"""Agents announce themselves: a heartbeat in the local NATS's key-value bucket ``rb_agents``.

Each instance writes ``<agent>.<instance>`` every ``interval`` seconds with what it serves and
what it did; on a clean stop it writes a last record marked stopped. Whoever reads the bucket
(``rbridge agents``, :func:`edge_agent.supervision.agent_statuses`) sees live agents, the ones
that went silent (no heartbeat for three intervals: crashed, hung or cut off) and the ones that
stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from typing import TYPE_CHECKING

import orjson
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

from bridge.agentkit import bucket
from bridge.cancellation import cancel_until_done
from bridge.contract import AGENTS_BUCKET
from bridge.natsconnect import replicas_for

if TYPE_CHECKING:
    from edge_agent.agent import Agent

log = logging.getLogger("edge_agent.heartbeat")
_UNSAFE = re.compile(r"[^-_A-Za-z0-9]")
#: Records of agents not heard of for a day are dropped from the bucket.
BUCKET_TTL_SECONDS = 86_400


def agent_key(agent: str, instance: str) -> str:
    return f"{_UNSAFE.sub('_', agent)}.{_UNSAFE.sub('_', instance)}"


async def agents_bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The agents' key-value bucket, created (with ``replicas`` copies) if needed."""
    return await bucket(js, AGENTS_BUCKET, ttl=BUCKET_TTL_SECONDS, replicas=replicas)


class Heartbeat:
    def __init__(self, agent: Agent, interval: float) -> None:
        self.agent = agent
        self.interval = interval
        self.key = agent_key(agent.name, agent.instance)
        self.started = time.time()
        self._bucket: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def record(self, *, stopped: bool = False) -> bytes:
        agent = self.agent
        return orjson.dumps(
            {
                "agent": agent.name,
                "instance": agent.instance,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "subjects": list(agent.subjects),
                "interval": self.interval,
                "started": self.started,
                "at": time.time(),
                "stopped": stopped,
                "handled": agent.stats.handled,
                "failed_attempts": agent.stats.failed_attempts,
                "dead_lettered": agent.stats.dead_lettered,
                "asked": agent.stats.asked,
                "asks_sent_again": agent.stats.asks_sent_again,
            }
        )

    async def start(self) -> None:
        try:
            nc = self.agent.nc
            self._bucket = await agents_bucket(nc.jetstream(), replicas_for(nc, None))
        except (NatsError, JetStreamError, TimeoutError) as error:
            # Supervision needs JetStream; the agent still works without it.
            log.warning(
                "no heartbeats: the agents bucket is unavailable (%s)", type(error).__name__
            )
            return
        await self._beat()
        self._task = asyncio.create_task(self._loop())

    async def _beat(self, *, stopped: bool = False) -> None:
        assert self._bucket is not None
        try:
            await self._bucket.put(self.key, self.record(stopped=stopped))
        except (NatsError, JetStreamError, TimeoutError) as error:
            log.warning("heartbeat not written: %s", type(error).__name__)

    async def _loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.interval)
            await self._beat()

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            # A cancellation can be lost inside nats-py's publish; the flag ends the loop anyway.
            await cancel_until_done(self._task)
        if self._bucket is not None:
            await self._beat(stopped=True)
