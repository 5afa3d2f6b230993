"""How full the bridge's streams are: metrics, and a ``/readyz`` note when one nears its bound.

A stream at its ``max_bytes`` refuses new messages (discard new): agents get ``Unavailable``, the
gateway answers a retriable code so the edge holds back. Nothing stored is lost, but the flow
stops until consumers catch up, so an operator is told before: from ``NEARLY_FULL`` of the bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError
from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger("rbridge.streams")

NEARLY_FULL = 0.9


def _size(value: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


class StreamWatch:
    def __init__(
        self, js: JetStreamContext, streams: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.js = js
        self.streams = tuple(streams)
        labels = ["stream"]
        self.messages = Gauge(
            "rbridge_stream_messages", "Messages held by the stream", labels, registry=registry
        )
        self.bytes = Gauge(
            "rbridge_stream_bytes", "Bytes held by the stream", labels, registry=registry
        )
        self.max_bytes = Gauge(
            "rbridge_stream_max_bytes",
            "The stream's bound in bytes (-1: none); at it, new messages are refused",
            labels,
            registry=registry,
        )
        self.fill = Gauge(
            "rbridge_stream_fill_ratio",
            "Bytes held over the stream's bound (0 without a bound)",
            labels,
            registry=registry,
        )
        self._notes: dict[str, str] = {}

    def notes(self) -> list[str]:
        return [self._notes[name] for name in self.streams if name in self._notes]

    async def check(self) -> None:
        for name in self.streams:
            info = await self.js.stream_info(name)
            held, bound = info.state.bytes, info.config.max_bytes or -1
            ratio = held / bound if bound > 0 else 0.0
            self.messages.labels(name).set(info.state.messages)
            self.bytes.labels(name).set(held)
            self.max_bytes.labels(name).set(bound)
            self.fill.labels(name).set(ratio)
            note = None
            if ratio >= NEARLY_FULL:
                note = (
                    f"stream {name} holds {_size(held)} of its max_bytes {_size(bound)} "
                    f"({info.state.messages} messages): at the bound new messages are refused "
                    "until its consumers catch up"
                )
            if note is not None and name not in self._notes:
                log.warning("%s", note)
            elif note is None and name in self._notes:
                log.info("stream %s has room again", name)
            if note is None:
                self._notes.pop(name, None)
            else:
                self._notes[name] = note

    async def run(self, every: float = 5.0) -> None:
        while True:
            try:
                await self.check()
            except (NatsError, JetStreamError, TimeoutError) as error:
                log.debug("cannot read the streams' state: %s", type(error).__name__)
            await asyncio.sleep(every)
