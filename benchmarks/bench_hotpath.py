"""The hot path, in one run: round trips against one JetStream hop, CPU at idle, recovery.

Run: .venv/bin/python -m benchmarks.bench_hotpath [--sync always|default] [--idle-seconds N]
     [--only latency|hops|idle|recovery ...]

Measured on this machine, in this run, with real nats-server processes and the runtimes as
separate processes (1 KiB claims):
- the yardstick: one JetStream hop (publish to a stream without awaiting the PubAck, a Python
  push consumer answers on core NATS to a reply header), at 10 and at 1,000 msg/s;
- the round trip agent -> RB_OUT -> edge -> link -> gateway -> RB_IN -> cloud agent -> RB_REPLY
  -> gateway -> link -> edge -> agent at the same rates, its ratio to the hop (target: p50 and
  p99 at most 4x), and the time in each of its three legs (to RB_IN, in the cloud agent's
  consumer, back to the agent), from the timestamps JetStream and the agents give;
- the same round trip at 10 msg/s hop by hop, from the bridge's own spans (tracing on, every
  request sampled, exported to a receiver in this process): agent -> the edge's decision ->
  the gateway's store -> stored in RB_IN -> the cloud agent -> the reply pump -> the edge's
  re-identification -> the agent;
- CPU of every process over ``--idle-seconds`` with no traffic (edge bridge, gateway, the example
  cloud agents, both NATS servers; target at most 1 % of a core each);
- after SIGKILL of the edge bridge, then of the gateway, under a steady 500 requests/s and a
  restart at once: the seconds from the restart until every request sent so far was answered
  (target at most 10 s), and that no request was stored twice in RB_IN.
CPU per message and throughput against the bare relay are in ``bench_e2e``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from benchmarks.bench_e2e import (
    CLAIM,
    ROOT,
    cpu_seconds,
    dev_material,
    otlp_receiver,
    start_bridge,
    start_process,
    stop_all,
)
from bridge.natsserver import NatsServer

TARGET_RATIO = 4.0
TARGET_IDLE_PERCENT = 1.0
TARGET_RECOVERY_S = 10.0


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[
        min(len(ordered) - 1, int(0.99 * len(ordered)))
    ] * 1000


async def paced(count: int, rate: float, send: Any) -> None:
    """Call ``send(number)`` ``count`` times at ``rate`` per second (open loop)."""
    begin = time.perf_counter()
    for number in range(count):
        delay = begin + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(number)


# --- the yardstick ---------------------------------------------------------------------------


async def one_hop(work: Path, sync: str | None, rate: float, count: int) -> tuple[float, float]:
    server = NatsServer(work / f"hop-{rate:.0f}", name="hop", sync_interval=sync)
    server.start()
    try:
        consumer_side = await nats.connect(server.url)
        js = consumer_side.jetstream()
        await js.add_stream(name="HOP", subjects=["hop.>"])

        async def answer(message: Any) -> None:
            await consumer_side.publish(message.headers["Hop-Reply"], b"ok")
            await message.ack()

        await js.subscribe("hop.>", durable="hop", manual_ack=True, cb=answer, stream="HOP")
        sender = await nats.connect(server.url)
        inbox = sender.new_inbox()
        seconds: list[float] = []
        done = asyncio.Event()
        # The consumer answers with a bare message, in order: match answers by arrival.
        order: list[float] = []

        async def arrived_in_order(_message: Any) -> None:
            seconds.append(time.perf_counter() - order[len(seconds)])
            if len(seconds) >= count:
                done.set()

        await sender.subscribe(inbox, cb=arrived_in_order)
        await sender.flush()

        async def send(_number: int) -> None:
            order.append(time.perf_counter())
            await sender.publish("hop.docs", CLAIM, headers={"Hop-Reply": inbox})

        await paced(count, rate, send)
        await asyncio.wait_for(done.wait(), 60)
        await sender.close()
        await consumer_side.close()
        return percentiles(seconds)
    finally:
        server.kill()


# --- the round trip --------------------------------------------------------------------------


@dataclass
class RoundTrip:
    seconds: list[float] = field(default_factory=list)
    to_cloud: list[float] = field(default_factory=list)  # agent -> stored in RB_IN
    in_cloud: list[float] = field(default_factory=list)  # stored in RB_IN -> the cloud agent
    back: list[float] = field(default_factory=list)  # the cloud agent's reply -> the agent
    cpu: dict[str, float] = field(default_factory=dict)  # process -> microseconds per request


class CloudAnswerer:
    """A cloud agent on RB_IN (a push consumer, as in the yardstick) that answers at once."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answered: dict[str, float] = {}  # msg id -> wall time of the answer
        self.stored: dict[str, float] = {}  # msg id -> wall time RB_IN stored it
        self.received: dict[str, float] = {}

    async def start(self, subject: str = "rb.in.>") -> None:
        self.nc = await nats.connect(self.url)
        js = self.nc.jetstream()
        for _ in range(100):
            try:
                await js.stream_info("RB_IN")
                break
            except nats.js.errors.NotFoundError:
                await asyncio.sleep(0.1)

        async def answer(message: Any) -> None:
            now = time.time()
            headers = message.headers or {}
            msg_id = headers.get("Rb-Msg-Id", "")
            self.stored[msg_id] = message.metadata.timestamp.timestamp()
            self.received[msg_id] = now
            self.answered[msg_id] = time.time()
            reply = {"Rb-Reply": headers["Rb-Reply"], "Rb-Capability": "docs.parse"}
            if "traceparent" in headers:  # the reply continues the request's trace
                reply["traceparent"] = headers["traceparent"]
            await self.nc.publish(f"rb.reply.{headers['Rb-Site']}", b'{"ok":true}', headers=reply)
            await message.ack()

        await js.subscribe(subject, durable="agent", manual_ack=True, cb=answer, stream="RB_IN")

    async def stop(self) -> None:
        await self.nc.close()


class Asker:
    """An on-prem agent: requests on RB_OUT with a reply inbox, answers timed by message id."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: dict[str, tuple[float, float]] = {}  # msg id -> (perf counter, wall time)
        self.answers: dict[str, tuple[float, float]] = {}
        self.changed = asyncio.Event()
        self.traces: dict[str, str] | None = None  # msg id -> trace id, when sending traced

    async def start(self) -> None:
        self.nc = await nats.connect(self.url)
        self.js = self.nc.jetstream()
        self.inbox = self.nc.new_inbox()

        async def reply(message: Any) -> None:
            msg_id = (message.headers or {}).get("Rb-Msg-Id", "")
            if msg_id in self.sent and msg_id not in self.answers:
                self.answers[msg_id] = (time.perf_counter(), time.time())
                self.changed.set()

        await self.nc.subscribe(self.inbox, cb=reply)
        await self.nc.flush()

    async def ask(self, name: str) -> None:
        headers = {"Rb-Class": "confidential", "Rb-Reply-To": self.inbox, "Nats-Msg-Id": name}
        if self.traces is not None:  # a sampled trace of its own, so its spans can be found
            trace_id = os.urandom(16).hex()
            self.traces[f"plant-a/{name}"] = trace_id
            headers["traceparent"] = f"00-{trace_id}-{os.urandom(8).hex()}-01"
        self.sent[f"plant-a/{name}"] = (time.perf_counter(), time.time())
        await self.nc.publish("rb.out.docs.parse", CLAIM, headers=headers)

    async def all_answered(self, timeout: float) -> float:
        """Wait until every request sent was answered; the perf-counter time of the last."""
        deadline = time.monotonic() + timeout
        while len(self.answers) < len(self.sent):
            if time.monotonic() > deadline:
                missing = len(self.sent) - len(self.answers)
                raise TimeoutError(f"{missing} of {len(self.sent)} requests not answered")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)
        return max(answered for answered, _ in self.answers.values())

    async def stop(self) -> None:
        await self.nc.close()


@dataclass
class Linked:
    """A running bridge (both NATS servers, the gateway, one edge bridge) with an asking agent
    and an answering cloud agent, one request already answered."""

    work: Path
    edge_nats: NatsServer
    cloud_nats: NatsServer
    gateway: subprocess.Popen[bytes]
    edge: subprocess.Popen[bytes]
    cloud: CloudAnswerer
    agent: Asker
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def pids(self) -> dict[str, int]:
        return {
            "edge bridge": self.edge.pid,
            "gateway": self.gateway.pid,
            "edge NATS": self.edge_nats.process.pid,  # type: ignore[union-attr]
            "cloud NATS": self.cloud_nats.process.pid,  # type: ignore[union-attr]
        }

    def restart(self, victim: str) -> float:
        """SIGKILL the edge bridge or the gateway and start it again at once; when it restarted."""
        if victim == "edge":
            self.edge.kill()
            self.edge.wait()
            restarted = time.perf_counter()
            self.edge = start_process(
                ["-m", "bridge.cli.main", "edge", "--config", str(self.work / "edge-e0.yaml")],
                self.work / "edge-0.log",
            )
            return restarted
        self.gateway.kill()
        self.gateway.wait()
        restarted = time.perf_counter()
        self.gateway = start_process(
            ["-m", "bridge.cli.main", "cloud", "--config", str(self.work / "cloud.yaml")],
            self.work / "cloud.log",
        )
        return restarted


@contextlib.asynccontextmanager
async def linked(
    work: Path, pki: Path, keys: Path, sync: str | None, env: dict[str, str] | None = None
) -> AsyncIterator[Linked]:
    edge_nats, cloud_nats, gateway, processes = await start_bridge(work, pki, keys, 1, sync, env)
    bridge = Linked(
        work, edge_nats, cloud_nats, gateway, processes[0],
        CloudAnswerer(cloud_nats.url), Asker(edge_nats.url),
    )  # fmt: skip
    try:
        await bridge.cloud.start()
        await bridge.agent.start()
        await bridge.agent.ask("warm-up")
        await bridge.agent.all_answered(60)
        yield bridge
    finally:
        await bridge.agent.stop()
        await bridge.cloud.stop()
        stop_all(*bridge.others, bridge.edge, bridge.gateway)
        edge_nats.kill()
        cloud_nats.kill()


async def round_trip(
    work: Path, pki: Path, keys: Path, sync: str | None, rate: float, count: int
) -> RoundTrip:
    async with linked(work, pki, keys, sync) as bridge:
        agent, cloud = bridge.agent, bridge.cloud
        agent.sent.clear()
        agent.answers.clear()
        watched = bridge.pids()
        before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        await paced(count, rate, lambda number: agent.ask(f"r-{number}"))
        await agent.all_answered(120)
        result = RoundTrip()
        result.cpu = {
            name: (cpu_seconds(pid) - before[name]) / count * 1e6 for name, pid in watched.items()
        }
        for msg_id, (started, wall) in agent.sent.items():
            answered, answered_wall = agent.answers[msg_id]
            result.seconds.append(answered - started)
            if msg_id in cloud.stored:
                result.to_cloud.append(cloud.stored[msg_id] - wall)
                result.in_cloud.append(cloud.received[msg_id] - cloud.stored[msg_id])
                result.back.append(answered_wall - cloud.answered[msg_id])
        return result


# --- hop by hop ------------------------------------------------------------------------------


HOPS = (
    ("agent -> edge decision done", None, "rbridge.decide"),
    ("-> gateway store starts", "rbridge.decide", "rbridge.store"),
    ("-> stored in RB_IN", "rbridge.store", "stored"),
    ("-> cloud agent has it", "stored", "received"),
    ("-> reply pump takes the reply", "answered", "rbridge.reply.forward"),
    ("-> edge re-identifies it", "rbridge.reply.forward", "rbridge.reidentify"),
    ("-> agent has the reply", "rbridge.reidentify", "got"),
)


async def hop_by_hop(
    work: Path, pki: Path, keys: Path, sync: str | None, rate: float, count: int
) -> tuple[dict[str, list[float]], list[float]]:
    """Each hop's seconds for every request whose spans all arrived, and the round trips."""
    with otlp_receiver() as (receiver, endpoint):
        env = {**endpoint, "OTEL_TRACES_SAMPLER_ARG": "1.0"}
        async with linked(work, pki, keys, sync, env) as bridge:
            agent, cloud = bridge.agent, bridge.cloud
            agent.sent.clear()
            agent.answers.clear()
            agent.traces = {}
            await paced(count, rate, lambda number: agent.ask(f"h-{number}"))
            await agent.all_answered(120)
            sent, answers, traces = dict(agent.sent), dict(agent.answers), dict(agent.traces)
        # The runtimes export what is pending as they stop (above): every span is in by now.
    hops: dict[str, list[float]] = {label: [] for label, _, _ in HOPS}
    trips: list[float] = []
    for msg_id, trace_id in traces.items():
        times = {name: start for name, (start, _) in receiver.traces.get(trace_id, {}).items()}
        if msg_id not in answers or msg_id not in cloud.stored:
            continue
        times.update(
            stored=cloud.stored[msg_id], received=cloud.received[msg_id],
            answered=cloud.answered[msg_id], got=answers[msg_id][1],
        )  # fmt: skip
        if not all(name in times for _, _, name in HOPS):
            continue
        trips.append(answers[msg_id][0] - sent[msg_id][0])
        for label, before, after in HOPS:
            hops[label].append(
                times[after] - (sent[msg_id][1] if before is None else times[before])
            )
    return hops, trips


# --- idle ------------------------------------------------------------------------------------


async def idle(
    work: Path, pki: Path, keys: Path, sync: str | None, seconds: float
) -> dict[str, float]:
    """Percent of a core each process uses with nothing to do, after one message went through;
    the example cloud agents (the SDK's consumers) run too."""
    async with linked(work, pki, keys, sync) as bridge:
        agents = start_process(
            ["-m", "cloud_agent.examples.claims", "--nats", bridge.cloud_nats.url],
            work / "agents.log",
        )
        bridge.others.append(agents)
        await asyncio.sleep(2.0)  # settle
        watched = {**bridge.pids(), "cloud agents (SDK)": agents.pid}
        before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        return {
            name: (cpu_seconds(pid) - before[name]) / elapsed * 100 for name, pid in watched.items()
        }


# --- recovery --------------------------------------------------------------------------------


async def recovery(
    work: Path, pki: Path, keys: Path, sync: str | None, victim: str, rate: float = 500.0
) -> tuple[float, int, int]:
    """SIGKILL ``victim`` ("edge" or "gateway") one second into a steady flow, restart it at
    once; seconds from the restart until every request sent was answered, requests, and how
    many more messages RB_IN stored than requests."""
    async with linked(work, pki, keys, sync) as bridge:
        agent = bridge.agent
        flow = asyncio.create_task(
            paced(int(rate * 4), rate, lambda number: agent.ask(f"k-{number}"))
        )
        await asyncio.sleep(1.0)
        restarted = bridge.restart(victim)
        await flow
        last = await agent.all_answered(300)
        connection = await nats.connect(bridge.cloud_nats.url)
        stored = (await connection.jetstream().stream_info("RB_IN")).state.messages
        await connection.close()
        return last - restarted, len(agent.sent) - 1, stored - len(agent.sent)


# --- the report ------------------------------------------------------------------------------


SECTIONS = ("latency", "hops", "idle", "recovery")


async def run(sync: str | None, idle_seconds: float, sections: set[str]) -> None:
    work, pki, keys = dev_material("rbridge-hotpath-")
    mode = f"sync_interval: {sync}" if sync else "default sync_interval"
    print(f"hot path, 1 KiB claims, JetStream {mode}, code in {ROOT}")
    if "latency" in sections:
        for rate, count in ((10.0, 200), (1000.0, 5000)):
            await report_latency(work, pki, keys.directory, sync, rate, count)
    if "hops" in sections:
        rate, count = 10.0, 200
        hops, trips = await hop_by_hop(work / "hops", pki, keys.directory, sync, rate, count)
        trip50, trip99 = percentiles(trips) if trips else (float("nan"), float("nan"))
        print(
            f"\nthe round trip hop by hop at {rate:,.0f} msg/s, from the bridge's spans ({len(trips)} of "
            f"{count} requests; tracing on: every hop also records a span), round trip p50 "
            f"{trip50:.2f} ms, p99 {trip99:.2f} ms"
        )
        for label, values in hops.items():
            if values:
                hop50, hop99 = percentiles(values)
                print(f"    {label:<32}p50 {hop50:7.2f} ms  p99 {hop99:7.2f} ms")
    if "idle" in sections:
        print(
            f"\nCPU with no traffic, over {idle_seconds:.0f} s "
            f"(target {TARGET_IDLE_PERCENT:.0f} % of a core each)"
        )
        percents = await idle(work / "idle", pki, keys.directory, sync, idle_seconds)
        for name, percent in percents.items():
            print(f"  {name:<32}{percent:6.2f} %  {verdict(percent <= TARGET_IDLE_PERCENT)}")
    if "recovery" in sections:
        print(
            "\nrecovery after SIGKILL and an immediate restart, 500 requests/s "
            f"(target {TARGET_RECOVERY_S:.0f} s)"
        )
        for victim in ("edge", "gateway"):
            seconds, requests, extra = await recovery(
                work / f"kill-{victim}", pki, keys.directory, sync, victim
            )
            name = "edge bridge" if victim == "edge" else victim
            print(
                f"  {name:<32}every one of {requests} requests answered {seconds:5.1f} s after "
                f"the restart  {verdict(seconds <= TARGET_RECOVERY_S)}; "
                f"stored twice in RB_IN: {max(extra, 0)}"
            )


async def report_latency(
    work: Path, pki: Path, keys: Path, sync: str | None, rate: float, count: int
) -> None:
    hop = await one_hop(work, sync, rate, count)
    trip = await round_trip(work / f"trip-{rate:.0f}", pki, keys, sync, rate, count)
    p50, p99 = percentiles(trip.seconds)
    print(f"\nat {rate:,.0f} msg/s ({count} requests)")
    print(f"  one JetStream hop (yardstick)     p50 {hop[0]:7.2f} ms  p99 {hop[1]:7.2f} ms")
    print(f"  round trip through the bridge     p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
    ratio50, ratio99 = p50 / hop[0], p99 / hop[1]
    print(
        f"  ratio to the hop                  p50 {ratio50:7.1f} x   p99 {ratio99:7.1f} x   "
        f"(target {TARGET_RATIO:.0f}x: p50 {verdict(ratio50 <= TARGET_RATIO)}, "
        f"p99 {verdict(ratio99 <= TARGET_RATIO)})"
    )
    print(
        "  CPU per request (us)              "
        + ", ".join(f"{name} {value:.0f}" for name, value in trip.cpu.items())
    )
    for label, values in (
        ("agent -> stored in RB_IN", trip.to_cloud),
        ("RB_IN -> cloud agent", trip.in_cloud),
        ("cloud agent -> agent", trip.back),
    ):
        if values:
            leg50, leg99 = percentiles(values)
            print(f"    {label:<32}p50 {leg50:7.2f} ms  p99 {leg99:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sync", choices=["default", "always"], default="default")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only this part (repeatable)"
    )
    arguments = parser.parse_args()
    asyncio.run(
        run(
            None if arguments.sync == "default" else "always",
            arguments.idle_seconds,
            set(arguments.only or SECTIONS),
        )
    )


if __name__ == "__main__":
    main()
