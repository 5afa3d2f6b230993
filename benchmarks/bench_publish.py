"""Storing requests in a stream: the bridge's framing against nats-py's publish, in one run.

Run: .venv/bin/python -m benchmarks.bench_publish [--messages N] [--batch B] [--repeats R]

What the gateway does for every envelope it takes: publish a 1 KiB request with the ten
headers of a stored request to JetStream and wait for the PubAcks, a batch at a time. Measured
here on one nats-server, with ``StreamPublisher`` both ways: (a) every message through nats-py's
``Client.publish`` (the baseline; what the bridge did before) and (b) the frames built by
:mod:`bridge.natspublish`, handed over a batch at a time. Prints the publisher's CPU per
message (this process, which does nothing else), messages/s, the ratio, and the cost of
building one message's frame alone both ways. Target: (b) at most 0.8x the CPU of (a).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import nats
from nats.aio.client import Client

from benchmarks.bench_e2e import CLAIM
from bridge import natspublish
from bridge.natsserver import NatsServer
from bridge.runtime.publisher import StreamPublisher

TARGET_RATIO = 0.8
HEADERS = {
    "Nats-Msg-Id": "plant-a/0f8e2d1c-4b7a-4c55-9d1e-6a3b2c1d0e9f",
    "Rb-Msg-Id": "plant-a/0f8e2d1c-4b7a-4c55-9d1e-6a3b2c1d0e9f",
    "Rb-Site": "plant-a",
    "Rb-Rule": "claims-to-parser",
    "Rb-Policy": "7",
    "Rb-Class": "confidential",
    "Rb-Reply-Token": "v1." + "Qm9yZWFsaXMgdG9rZW4gZm9yIGEgcmVwbHk" * 5,
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "X-Request": "claim-intake",
    "X-Tenant": "north",
}


async def store(nc: Client, messages: int, batch: int, raw: bool) -> tuple[float, float]:
    """(CPU µs per message, messages/s) for ``messages`` stored in batches of ``batch``."""
    natspublish.RAW = raw
    publisher = StreamPublisher(nc)
    await publisher.start()
    items = [
        (f"rb.in.docs.{n % 8}", CLAIM, {**HEADERS, "Nats-Msg-Id": f"{raw}-{n}"})
        for n in range(messages)
    ]
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, messages, batch):
        answers = await publisher.publish_many(items[start : start + batch])
        assert answers == [None] * len(answers), answers[:3]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await publisher.stop()
    return cpu / messages * 1e6, messages / wall


async def nats_py_frame_us(count: int) -> float:
    """nats-py's own publish building one message, into a list instead of a socket."""
    client = Client()
    sent: list[bytes] = []

    async def keep(command: bytes) -> None:
        sent.append(command)

    client._send_command = keep  # type: ignore[method-assign,assignment]
    client._flush_queue = None
    client._max_pending_size = 1 << 40
    started = time.perf_counter()
    for _ in range(count):
        await client.publish("rb.in.docs.parse", CLAIM, reply="_INBOX.x.1", headers=HEADERS)
    return (time.perf_counter() - started) / count * 1e6


def bridge_frame_us(count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        natspublish.frame("rb.in.docs.parse", CLAIM, reply="_INBOX.x.1", headers=HEADERS)
    return (time.perf_counter() - started) / count * 1e6


async def run(messages: int, batch: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rbridge-publish-") as work:
        server = NatsServer(Path(work) / "nats")
        server.start()
        try:
            nc = await nats.connect(server.url)
            await nc.jetstream().add_stream(name="RB_IN", subjects=["rb.in.>"])
            runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for _ in range(repeats):  # alternating, so a busy moment falls on both
                for raw in (False, True):
                    runs[raw].append(await store(nc, messages, batch, raw))
                    await nc.jetstream().purge_stream("RB_IN")
            await nc.close()
        finally:
            natspublish.RAW = True
            server.kill()
    frame_them = statistics.median([await nats_py_frame_us(20_000) for _ in range(repeats)])
    frame_us = statistics.median([bridge_frame_us(20_000) for _ in range(repeats)])
    cpu = {raw: statistics.median(c for c, _ in runs[raw]) for raw in runs}
    rate = {raw: statistics.median(r for _, r in runs[raw]) for raw in runs}
    ratio = cpu[True] / cpu[False]
    print(f"1 KiB requests with {len(HEADERS)} headers, batches of {batch}, {messages:,} per run, median of {repeats}")  # fmt: skip
    print(
        f"(a) nats-py publish (baseline)   {cpu[False]:7.1f} us CPU/msg  {rate[False]:9,.0f} msg/s"
    )
    print(f"(b) frames of bridge.natspublish {cpu[True]:7.1f} us CPU/msg  {rate[True]:9,.0f} msg/s")
    print(
        f"ratio (b)/(a) {ratio:.2f}  target <= {TARGET_RATIO}: "
        f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}"
    )
    print(f"one message's frame alone: nats-py {frame_them:.2f} us, bridge {frame_us:.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.messages, arguments.batch, arguments.repeats))


if __name__ == "__main__":
    main()
