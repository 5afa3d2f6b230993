"""Taking messages from a pull consumer and acking them: off the wire against nats-py, in one run.

Run: .venv/bin/python -m benchmarks.bench_consume [--messages N] [--repeats R]

What the edge does for every message an agent sends, and the gateway's reply pump for every
reply: take it from a durable pull consumer (``PullConsumer``, standing pull requests of 256)
and ack it once it has been dealt with, a batch at a time. Measured here on one nats-server with
1 KiB messages carrying the four headers the SDKs write, both ways: (a) messages delivered by
nats-py (its parse, its queue and task, a coroutine call per message) and acked with one
``Msg.ack`` each (the baseline; what the bridge did before) and (b) messages read off the wire
by :mod:`bridge.natsread` and acked through ``Settlement``, one batch of frames. Prints the
consumer's CPU per message (this process, which does nothing else), messages/s and the ratio.
Target: (b) at most 0.8x the CPU of (a).
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
from nats.js import api

from benchmarks.bench_e2e import CLAIM
from bridge import natspublish, natsread
from bridge.natsconsume import PullConsumer
from bridge.natsserver import NatsServer
from bridge.runtime.settlement import Settlement

TARGET_RATIO = 0.8
STREAM = "RB_OUT"


def headers(number: int) -> dict[str, str]:
    return {
        "Rb-Class": "confidential",
        "Nats-Msg-Id": f"0f8e2d1c-4b7a-4c55-9d1e-{number:012d}",
        "Rb-Reply-To": f"_INBOX.claims-intake.{number}",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }


async def fill(nc: Client, messages: int) -> None:
    publisher = nc.jetstream()
    for start in range(0, messages, 512):
        await asyncio.gather(
            *(
                publisher.publish("rb.out.docs.parse", CLAIM, headers=headers(n))
                for n in range(start, min(messages, start + 512))
            )
        )


async def consume(
    nc: Client, messages: int, durable: str, off_the_wire: bool
) -> tuple[float, float]:
    """(CPU µs per message, messages/s) for taking and acking all ``messages``."""
    natsread.HOOK = off_the_wire
    await nc.jetstream().add_consumer(
        STREAM, config=api.ConsumerConfig(durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT)
    )
    consumer = PullConsumer(nc, STREAM, durable, batch=256)
    settlement = Settlement()
    cpu, wall = time.process_time(), time.perf_counter()
    await consumer.start()
    taken = 0
    while taken < messages:
        batch = await consumer.take()
        taken += len(batch)
        if off_the_wire:
            for message in batch:
                settlement.ack(message)
            await settlement.flush()
        else:
            for message in batch:
                await message.ack()
    await nc.flush()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await consumer.stop()
    async with asyncio.timeout(30):  # every message was acked (the server takes acks in turn)
        while (info := await nc.jetstream().consumer_info(STREAM, durable)).num_ack_pending:
            await asyncio.sleep(0.05)
    assert info.delivered.stream_seq == messages, info
    await nc.jetstream().delete_consumer(STREAM, durable)
    return cpu / messages * 1e6, messages / wall


async def run(messages: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rbridge-consume-") as work:
        server = NatsServer(Path(work) / "nats")
        server.start()
        try:
            nc = await nats.connect(server.url)
            await nc.jetstream().add_stream(name=STREAM, subjects=["rb.out.>"])
            await fill(nc, messages)
            runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for repeat in range(repeats):  # alternating, so a busy moment falls on both
                for off_the_wire in (False, True):
                    durable = f"run-{repeat}-{int(off_the_wire)}"
                    runs[off_the_wire].append(await consume(nc, messages, durable, off_the_wire))
            await nc.close()
        finally:
            natsread.HOOK = natspublish.RAW = True
            server.kill()
    cpu = {way: statistics.median(c for c, _ in runs[way]) for way in runs}
    rate = {way: statistics.median(r for _, r in runs[way]) for way in runs}
    ratio = cpu[True] / cpu[False]
    print(f"1 KiB messages with 4 headers, pull requests of 256, {messages:,} per run, median of {repeats}")  # fmt: skip
    print(f"(a) nats-py delivery, Msg.ack each  {cpu[False]:7.1f} us CPU/msg  {rate[False]:9,.0f} msg/s")  # fmt: skip
    print(f"(b) off the wire, acks in a batch   {cpu[True]:7.1f} us CPU/msg  {rate[True]:9,.0f} msg/s")  # fmt: skip
    print(
        f"ratio (b)/(a) {ratio:.2f}  target <= {TARGET_RATIO}: "
        f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.messages, arguments.repeats))


if __name__ == "__main__":
    main()
