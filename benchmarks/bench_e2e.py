"""The bridge end to end against a bare relay and a NATS leafnode, on this machine, in one run.

Run: .venv/bin/python -m benchmarks.bench_e2e [--messages N] [--sync always|default] [--backlog N] [--tracing]

(b) a bare Python relay: nats-py subscribe on NATS A, publish to NATS B (no policy, no gRPC);
(c) a NATS leafnode with mutual TLS from A to B (no Python at all; it cannot redact);
the bridge: RB_OUT on A, `rbridge edge` (policy, redaction, audit), the mTLS link,
`rbridge cloud`, RB_IN on B, with one and with two edge bridge processes on one consumer.
Prints messages/s, CPU per message of each Python process (process CPU over the run / messages),
the bridge's ratio to (b) and (c), p50/p99 of request -> cloud agent -> reply at 1,000 msg/s, and
the edge bridge's RSS while a backlog waits for a down link, then how fast that backlog drains.
Targets (met/MISSED, for the run with one edge bridge): at least 0.3x the relay's messages/s,
at most 40 us of edge bridge CPU and 20 us of gateway CPU per message. The round trip's target,
4x one JetStream hop measured in the same run, is judged by ``bench_hotpath``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import nats
import orjson
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from benchmarks.bench_policy import reference_claim
from bridge.keys import FileKeyStore
from bridge.link.pki import write_dev_pki
from bridge.natsserver import NatsServer
from bridge.up.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
CLAIM = orjson.dumps(reference_claim())
TARGET_RATIO = 0.3  # one edge bridge's messages/s against the bare relay's
TARGET_EDGE_US = 40.0
TARGET_GATEWAY_US = 20.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def publish_fast(
    url: str,
    subject: str,
    count: int,
    headers: Callable[[int], dict[str, str]] | None,
    jetstream: bool,
) -> None:
    """Windowed publishing: many in flight, acks (for JetStream) collected on one inbox."""
    connection = await nats.connect(url)
    if not jetstream:
        for number in range(count):
            await connection.publish(subject, CLAIM, headers=headers(number) if headers else None)
        await connection.flush()
        await connection.close()
        return
    inbox = connection.new_inbox()
    window = asyncio.Semaphore(2048)

    async def acked(_message: Any) -> None:
        window.release()

    await connection.subscribe(f"{inbox}.*", cb=acked)
    for number in range(count):
        await window.acquire()
        await connection.publish(
            subject, CLAIM, reply=f"{inbox}.{number}", headers=headers(number) if headers else None
        )
    for _ in range(2048):
        await window.acquire()
    await connection.close()


async def count_arrivals(url: str, subject: str, count: int, timeout: float = 600) -> float:
    """Seconds until ``count`` messages arrived on ``subject`` (core subscription)."""
    connection = await nats.connect(url)
    done = asyncio.Event()
    seen = 0
    first = 0.0

    async def arrived(_message: Any) -> None:
        nonlocal seen, first
        seen += 1
        if seen == 1:
            first = time.perf_counter()
        if seen >= count:
            done.set()

    await connection.subscribe(subject, cb=arrived)
    await connection.flush()
    started = time.perf_counter()
    await asyncio.wait_for(done.wait(), timeout)
    elapsed = time.perf_counter() - started
    await connection.close()
    return elapsed


async def count_stored(url: str, stream: str, count: int, timeout: float = 600) -> float:
    """Seconds until ``stream`` holds ``count`` messages: stored, not merely published (a
    resend that JetStream drops as a duplicate is seen by a core subscriber but not stored)."""
    connection = await nats.connect(url)
    js = connection.jetstream()
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < timeout:
            try:
                if (await js.stream_info(stream)).state.messages >= count:
                    return time.perf_counter() - started
            except nats.js.errors.NotFoundError:
                pass
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{stream} did not reach {count} messages in {timeout:.0f} s")
    finally:
        await connection.close()


class Relay:
    """(b): a bare nats-py relay in its own process."""

    @staticmethod
    async def serve(source: str, target: str) -> None:
        a = await nats.connect(source)
        b = await nats.connect(target)

        async def forward(message: Any) -> None:
            await b.publish("out." + message.subject, message.data, headers=message.headers)

        await a.subscribe("relay.>", cb=forward)
        await a.flush()
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await b.flush()


def start_process(
    arguments: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, *arguments],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=handle,
            stderr=handle,
            env={**os.environ, **(env or {})},
        )


async def wait_for_text(log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in (log.read_text(errors="replace") if log.exists() else ""):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not in {log}")
        await asyncio.sleep(0.05)


def dev_material(prefix: str) -> tuple[Path, Path, FileKeyStore]:
    """A fresh work directory with a development PKI for site plant-a and the edge's keys."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    write_dev_pki(work / "pki", ["plant-a"])
    keys = FileKeyStore(work / "keys")
    for name in ("pseudonyms", "correlation", "reply-tokens"):
        keys.create(name)
    return work, work / "pki", keys


async def run(messages: int, sync: str | None, backlog: int) -> None:
    work, pki, keys = dev_material("rbridge-bench-")
    results: dict[str, Any] = {}

    # (b) bare relay
    a, b = (
        NatsServer(work / "ra", name="ra", sync_interval=sync),
        NatsServer(work / "rb", name="rb", sync_interval=sync),
    )
    a.start()
    b.start()
    relay = start_process(
        ["-m", "benchmarks.bench_e2e", "--relay", a.url, b.url], work / "relay.log"
    )
    await wait_for_text(work / "relay.log", "READY")
    before = cpu_seconds(relay.pid)
    arrivals = asyncio.create_task(count_arrivals(b.url, "out.relay.>", messages))
    await asyncio.sleep(0.2)
    await publish_fast(a.url, "relay.docs", messages, None, jetstream=False)
    elapsed = await arrivals
    results["relay"] = (messages / elapsed, (cpu_seconds(relay.pid) - before) / messages * 1e6)
    relay.stdin.close()  # type: ignore[union-attr]
    relay.wait(10)
    a.kill()
    b.kill()

    # (c) leafnode with mutual TLS
    hub = NatsServer(
        work / "hub", name="hub", sync_interval=sync,
        extra_config=f'leafnodes {{\n  listen: "127.0.0.1:-1"\n  tls {{ cert_file: "{pki}/gateway.pem", key_file: "{pki}/gateway.key", ca_file: "{pki}/ca.pem", verify: true }}\n}}',
    )  # fmt: skip
    hub.start()
    leaf_port = int(
        next(
            line
            for line in hub.log_path.read_text().splitlines()
            if "leafnode connections on" in line
        ).rsplit(":", 1)[1]
    )
    leaf = NatsServer(
        work / "leaf", name="leaf", sync_interval=sync,
        extra_config=f'leafnodes {{\n  remotes: [ {{ url: "tls://localhost:{leaf_port}", tls {{ cert_file: "{pki}/site-plant-a.pem", key_file: "{pki}/site-plant-a.key", ca_file: "{pki}/ca.pem" }} }} ]\n}}',
    )  # fmt: skip
    leaf.start()
    await wait_for_text(leaf.log_path, "Leafnode connection created")
    await asyncio.sleep(0.5)
    arrivals = asyncio.create_task(count_arrivals(hub.url, "leaf.>", messages))
    await asyncio.sleep(0.5)
    await publish_fast(leaf.url, "leaf.docs", messages, None, jetstream=False)
    elapsed = await arrivals
    results["leafnode"] = (messages / elapsed, float("nan"))
    hub.kill()
    leaf.kill()

    # the bridge, with one and two edge bridge processes
    for edges in (1, 2):
        results[f"bridge-{edges}"] = await run_bridge(
            work / f"bridge{edges}", pki, keys.directory, messages, edges, sync
        )

    latency = await run_latency(work / "latency", pki, keys.directory, sync)
    memory = await run_backlog(work / "backlog", pki, keys.directory, backlog, sync)

    mode = f"sync_interval: {sync}" if sync else "default sync_interval"
    print(
        f"\n1 KiB claim messages, {messages:,} per run, JetStream {mode}, {os.cpu_count()} cores shared by every process"
    )
    print(f"{'path':<36}{'msg/s':>10}{'CPU us/msg':>26}")
    relay_rate, relay_cpu = results["relay"]
    print(f"{'(b) bare Python relay':<36}{relay_rate:>10,.0f}{relay_cpu:>26.1f}")
    print(f"{'(c) NATS leafnode, mTLS':<36}{results['leafnode'][0]:>10,.0f}{'(no Python)':>26}")
    for edges in (1, 2):
        figures = results[f"bridge-{edges}"]
        cpu = ", ".join(f"{value:.1f}" for value in figures["edge_cpu"])
        print(
            f"{f'bridge, {edges} edge bridge(s)':<36}{figures['rate']:>10,.0f}  {'edge ' + cpu + '; gateway ' + format(figures['gateway_cpu'], '.1f'):>24}"
        )
        print(f"{'':<36}ratio to (b) {figures['rate'] / relay_rate:.2f}, to (c) {figures['rate'] / results['leafnode'][0]:.2f}; "
              f"duplicates in RB_IN: {figures['duplicates']}; decided twice: {figures['decided_twice']}")  # fmt: skip
    one = results["bridge-1"]
    ratio, edge_us, gateway_us = one["rate"] / relay_rate, one["edge_cpu"][0], one["gateway_cpu"]
    print(
        f"targets, one edge bridge: ratio to (b) {ratio:.2f} >= {TARGET_RATIO}: "
        f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}; edge {edge_us:.2f} <= {TARGET_EDGE_US:.0f} us: "
        f"{'met' if edge_us <= TARGET_EDGE_US else 'MISSED'}; gateway {gateway_us:.2f} <= "
        f"{TARGET_GATEWAY_US:.0f} us: {'met' if gateway_us <= TARGET_GATEWAY_US else 'MISSED'}"
    )
    print(
        f"round trip at 1,000 msg/s (agent -> edge -> cloud agent -> reply): p50 {latency[0]:.2f} ms, p99 {latency[1]:.2f} ms"
    )
    print(
        f"backlog of {backlog:,} with the link down: edge bridge RSS {memory[0]:.0f} MiB; drained at {memory[1]:,.0f} msg/s when it came back"
    )


def bridge_configs(
    work: Path, pki: Path, keys: Path, edge_url: str, cloud_url: str, port: int, instance: str
) -> tuple[Path, Path]:
    (work / "policy").mkdir(parents=True, exist_ok=True)
    policy = work / "policy" / "claims.yaml"
    policy.write_text((ROOT / "policies" / "claims.yaml").read_text())
    cloud = {
        "listen": f"127.0.0.1:{port}", "http": "127.0.0.1:0", "tls": {"cert": str(pki / "gateway.pem"), "key": str(pki / "gateway.key"), "ca": str(pki / "ca.pem")},
        "sites": {"plant-a": {"capabilities": [">"]}}, "nats": {"url": cloud_url}, "log_level": "info",
        # The throughput runs have no cloud agent (RB_IN holds all) and the backlog run waits a
        # million claims: no byte bound on the streams, so the runs measure speed, not bounds.
        "streams": {"inbound": {"max_bytes": -1}, "replies": {"max_bytes": -1}},
    }  # fmt: skip
    edge = {
        "site": "plant-a", "instance": instance, "nats": {"url": edge_url}, "policy": {"path": str(policy)}, "keys_dir": str(keys),
        "audit": {"dir": str(work / f"audit-{instance}")}, "http": "127.0.0.1:0", "log_level": "info",
        "destinations": {"cloud-eu": {"address": f"localhost:{port}"}, "cloud-us": {"address": f"localhost:{port}"}},
        "tls": {"cert": str(pki / "site-plant-a.pem"), "key": str(pki / "site-plant-a.key"), "ca": str(pki / "ca.pem")},
        "streams": {"outbound": {"max_bytes": -1}},
    }  # fmt: skip
    cloud_path, edge_path = work / "cloud.yaml", work / f"edge-{instance}.yaml"
    cloud_path.write_text(yaml.safe_dump(cloud))
    edge_path.write_text(yaml.safe_dump(edge))
    return cloud_path, edge_path


async def start_bridge(
    work: Path,
    pki: Path,
    keys: Path,
    edges: int,
    sync: str | None,
    env: dict[str, str] | None = None,
) -> tuple[NatsServer, NatsServer, subprocess.Popen[bytes], list[subprocess.Popen[bytes]]]:
    work.mkdir(parents=True, exist_ok=True)
    edge_nats = NatsServer(work / "edge-nats", name="edge", sync_interval=sync)
    cloud_nats = NatsServer(work / "cloud-nats", name="cloud", sync_interval=sync)
    edge_nats.start()
    cloud_nats.start()
    port = free_port()
    processes = []
    cloud_config, _ = bridge_configs(work, pki, keys, edge_nats.url, cloud_nats.url, port, "e0")
    gateway = start_process(
        ["-m", "bridge.cli.main", "cloud", "--config", str(cloud_config)], work / "cloud.log", env
    )
    await wait_for_text(work / "cloud.log", "rbridge cloud: link on")
    for index in range(edges):
        _, edge_config = bridge_configs(
            work, pki, keys, edge_nats.url, cloud_nats.url, port, f"e{index}"
        )
        processes.append(
            start_process(
                ["-m", "bridge.cli.main", "edge", "--config", str(edge_config)],
                work / f"edge-{index}.log",
                env,
            )
        )
        await wait_for_text(work / f"edge-{index}.log", "rbridge edge: site")
    await asyncio.sleep(1.0)
    return edge_nats, cloud_nats, gateway, processes


def stop_all(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


async def run_bridge(
    work: Path,
    pki: Path,
    keys: Path,
    messages: int,
    edges: int,
    sync: str | None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    edge_nats, cloud_nats, gateway, processes = await start_bridge(
        work, pki, keys, edges, sync, env
    )
    try:
        before = [cpu_seconds(p.pid) for p in processes]
        gateway_before = cpu_seconds(gateway.pid)
        arrivals = asyncio.create_task(count_stored(cloud_nats.url, "RB_IN", messages))
        await publish_fast(
            edge_nats.url,
            "rb.out.docs.parse",
            messages,
            lambda n: {"Rb-Class": "confidential", "Nats-Msg-Id": f"m-{n}"},
            jetstream=True,
        )
        elapsed = await arrivals
        edge_cpu = [
            (cpu_seconds(p.pid) - b) / messages * 1e6
            for p, b in zip(processes, before, strict=True)
        ]
        gateway_cpu = (cpu_seconds(gateway.pid) - gateway_before) / messages * 1e6
        connection = await nats.connect(cloud_nats.url)
        stored = (await connection.jetstream().stream_info("RB_IN")).state.messages
        await connection.close()
        # Every decision is an audit record: more records than messages means some message
        # was decided twice (taken by both edge bridges, or redelivered).
        decided = sum(len(path.read_bytes().splitlines()) for path in work.glob("audit-*/*.jsonl"))
        return {
            "rate": messages / elapsed,
            "edge_cpu": edge_cpu,
            "gateway_cpu": gateway_cpu,
            "duplicates": stored - messages,
            "decided_twice": decided - messages,
        }
    finally:
        stop_all(*processes, gateway)
        edge_nats.kill()
        cloud_nats.kill()


async def run_latency(
    work: Path, pki: Path, keys: Path, sync: str | None, rate: float = 1000.0, count: int = 5000
) -> tuple[float, float]:
    edge_nats, cloud_nats, gateway, processes = await start_bridge(work, pki, keys, 1, sync)
    try:
        cloud = await nats.connect(cloud_nats.url)
        cloud_js = cloud.jetstream()

        async def answer(message: Any) -> None:
            headers = message.headers or {}
            await cloud.publish(
                f"rb.reply.{headers['Rb-Site']}",
                b'{"ok":true}',
                headers={"Rb-Reply": headers["Rb-Reply"], "Rb-Capability": "docs.parse"},
            )
            await message.ack()

        await cloud_js.subscribe(
            "rb.in.>", durable="agent", manual_ack=True, cb=answer, stream="RB_IN"
        )
        # Replies go through the RB_REPLY stream: publish with JetStream semantics via the subject.
        local = await nats.connect(edge_nats.url)
        inbox = local.new_inbox()
        sent: dict[str, float] = {}
        latencies: list[float] = []
        done = asyncio.Event()

        async def reply(message: Any) -> None:
            msg_id = (message.headers or {}).get("Rb-Msg-Id", "")
            started = sent.pop(msg_id, None)
            if started is not None:
                latencies.append(time.perf_counter() - started)
            if len(latencies) >= count:
                done.set()

        await local.subscribe(inbox, cb=reply)
        js = local.jetstream()
        begin = time.perf_counter()
        for number in range(count):
            target = begin + number / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[f"plant-a/l-{number}"] = time.perf_counter()
            await js.publish(
                "rb.out.docs.parse",
                CLAIM,
                headers={
                    "Rb-Class": "confidential",
                    "Rb-Reply-To": inbox,
                    "Nats-Msg-Id": f"l-{number}",
                },
            )
        await asyncio.wait_for(done.wait(), 120)
        await local.close()
        await cloud.close()
        ordered = sorted(latencies)
        return statistics.median(ordered) * 1000, ordered[int(0.99 * len(ordered))] * 1000
    finally:
        stop_all(*processes, gateway)
        edge_nats.kill()
        cloud_nats.kill()


async def run_backlog(
    work: Path, pki: Path, keys: Path, backlog: int, sync: str | None
) -> tuple[float, float]:
    edge_nats, cloud_nats, gateway, processes = await start_bridge(work, pki, keys, 1, sync)
    try:
        stop_all(gateway)  # the link is down
        await asyncio.sleep(2.0)
        await publish_fast(
            edge_nats.url,
            "rb.out.docs.parse",
            backlog,
            lambda n: {"Rb-Class": "confidential", "Nats-Msg-Id": f"b-{n}"},
            jetstream=True,
        )
        await asyncio.sleep(3.0)
        rss = rss_mib(processes[0].pid)
        arrivals = asyncio.create_task(
            count_arrivals(cloud_nats.url, "rb.in.>", backlog, timeout=1200)
        )
        await asyncio.sleep(0.2)
        gateway = start_process(
            ["-m", "bridge.cli.main", "cloud", "--config", str(work / "cloud.yaml")],
            work / "cloud.log",
        )
        elapsed = await arrivals
        return rss, backlog / elapsed
    finally:
        stop_all(*processes, gateway)
        edge_nats.kill()
        cloud_nats.kill()


class SpanReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP receiver in this process: counts the spans, and keeps each one's start and end by
    trace id and name (what the hop-by-hop timing reads)."""

    def __init__(self) -> None:
        self.count = 0
        self.traces: dict[str, dict[str, tuple[float, float]]] = {}

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.count += 1
                    self.traces.setdefault(span.trace_id.hex(), {})[span.name] = (
                        span.start_time_unix_nano / 1e9,
                        span.end_time_unix_nano / 1e9,
                    )
        return trace_service_pb2.ExportTraceServiceResponse()


@contextlib.contextmanager
def otlp_receiver() -> Iterator[tuple[SpanReceiver, dict[str, str]]]:
    """A receiver listening on loopback, and the environment that sends a process's spans to it."""
    receiver = SpanReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield receiver, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    finally:
        server.stop(5).wait()


async def run_tracing(messages: int, sync: str | None) -> None:
    """The edge bridge's and the gateway's CPU per message with tracing off, and on at 100 %
    and 1 % sampling (spans exported to a receiver in this process), one after another."""
    work, pki, keys = dev_material("rbridge-bench-tracing-")
    with otlp_receiver() as (receiver, endpoint):
        await _tracing_modes(work, pki, keys.directory, messages, sync, receiver, endpoint)


async def _tracing_modes(
    work: Path, pki: Path, keys: Path, messages: int, sync: str | None,
    receiver: SpanReceiver, endpoint: dict[str, str],
) -> None:  # fmt: skip
    modes = {
        "tracing off": None,
        "tracing on, 100 % sampled": {**endpoint, "OTEL_TRACES_SAMPLER_ARG": "1.0"},
        "tracing on, 1 % sampled": {**endpoint, "OTEL_TRACES_SAMPLER_ARG": "0.01"},
    }
    print(f"\n1 KiB claims, {messages:,} per run, one edge bridge; CPU per message")
    print(f"{'mode':<30}{'msg/s':>10}{'edge us/msg':>14}{'gateway us/msg':>16}{'spans':>10}")
    for name, env in modes.items():
        before = receiver.count
        figures = await run_bridge(
            work / name.replace(" ", "-").replace("%", "pc").replace(",", ""),
            pki, keys, messages, 1, sync, env,
        )  # fmt: skip
        print(
            f"{name:<30}{figures['rate']:>10,.0f}{figures['edge_cpu'][0]:>14.1f}"
            f"{figures['gateway_cpu']:>16.1f}{receiver.count - before:>10,}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--sync", choices=["default", "always"], default="default")
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--relay", nargs=2, metavar=("SOURCE", "TARGET"), help=argparse.SUPPRESS)
    parser.add_argument("--tracing", action="store_true", help="only the tracing off/on comparison")
    arguments = parser.parse_args()
    if arguments.relay:
        asyncio.run(Relay.serve(*arguments.relay))
        return
    if arguments.tracing:
        sync = None if arguments.sync == "default" else "always"
        asyncio.run(run_tracing(arguments.messages, sync))
        return
    asyncio.run(
        run(
            arguments.messages, None if arguments.sync == "default" else "always", arguments.backlog
        )
    )


if __name__ == "__main__":
    main()
