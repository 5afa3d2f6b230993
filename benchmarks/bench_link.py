"""Link speed: 1 KiB envelopes over mutual TLS on loopback, edge and gateway in two processes.

Run: .venv/bin/python -m benchmarks.bench_link [--envelopes N]

Measures, in one run: (1) one envelope per gRPC message, both as a plain gRPC stream client and
as the link with max_batch 1 (the baselines); (2) the batched link (batches of up to 256, 2 ms linger, window 4096); each as envelopes/s and
p50/p99 from send() to ack; then (3) the batched link paced at 5,000 envelopes/s, for latency;
then (4) one envelope at a time at 20/s, what a request meets at each crossing when the bridge is
quiet (every process asleep between them): the link, a plain gRPC stream, and a TLS 1.3 echo
over asyncio streams between the same two processes (the floor: two wake-ups and no gRPC).
Targets: batched >= 150,000 envelopes/s and >= 10x the unbatched figure; p99 at 5,000/s <= 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from bridge.link import (
    ClientTLS,
    EdgeLink,
    Envelope,
    Hello,
    LinkGateway,
    LinkSettings,
    Reject,
    Revocations,
    ServerTLS,
    SiteIdentity,
    TLSFiles,
)
from bridge.link.pki import DEFAULT_TRUST_DOMAIN, write_dev_pki

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = b"x" * 1024
SLOW_COUNT = 200
SLOW_RATE = 20.0


class NullStore:
    """Acks everything at once: measures the link, not a store behind it."""

    async def accept(
        self, site: SiteIdentity, envelopes: Sequence[Envelope]
    ) -> Sequence[Reject | None]:
        return [None] * len(envelopes)


async def serve(pki: Path) -> None:
    gateway = LinkGateway(
        tls=ServerTLS(TLSFiles(pki / "gateway.pem", pki / "gateway.key", pki / "ca.pem")),
        revocations=Revocations((pki / "ca.pem").read_bytes(), pki / "crl.pem"),
        trust_domain=DEFAULT_TRUST_DOMAIN,
        sites={"bench": [">"]},
        handler=NullStore(),
    )
    port = await gateway.start("127.0.0.1:0")

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await reader.readexactly(len(PAYLOAD))
                writer.write(b"ack")

    echoing = await asyncio.start_server(
        echo, "127.0.0.1", 0, ssl=_tls(pki, "gateway", server=True)
    )
    echo_port = echoing.sockets[0].getsockname()[1]
    print(f"PORT {port} {echo_port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), stop.set)  # parent closes stdin: report CPU and leave
    await stop.wait()
    echoing.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"CPU {usage.ru_utime + usage.ru_stime}", flush=True)
    await gateway.stop(1)


class Timings:
    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.done = 0
        self.rejected = 0

    def __call__(self, token: Any, envelope: Envelope, reject: Reject | None) -> None:
        self.latencies.append(time.perf_counter() - self.sent.pop(envelope.id))
        self.done += 1
        if reject is not None:
            self.rejected += 1


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def _quantiles(seconds: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(seconds) * 1000, "p99": percentile(seconds, 0.99)}


async def _edge_link(port: int, pki: Path, settings: LinkSettings, timings: Timings) -> EdgeLink:
    """The link of site "bench" to the gateway on ``port``, up."""
    link = EdgeLink(
        f"localhost:{port}",
        ClientTLS(TLSFiles(pki / "site-bench.pem", pki / "site-bench.key", pki / "ca.pem")),
        Hello("bench"),
        on_result=timings,
        settings=settings,
    )
    await link.start()
    await link.wait_up(20)
    return link


@contextlib.asynccontextmanager
async def _plain_stream(port: int, pki: Path) -> AsyncIterator[Any]:
    """A plain gRPC stream to the gateway on ``port``, its hello answered."""
    import grpc

    from bridge.link.v1 import link_pb2 as pb
    from bridge.link.v1 import link_pb2_grpc as pb_grpc

    credentials = grpc.ssl_channel_credentials(
        (pki / "ca.pem").read_bytes(),
        (pki / "site-bench.key").read_bytes(),
        (pki / "site-bench.pem").read_bytes(),
    )
    async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
        call = pb_grpc.LinkStub(channel).Connect()
        await call.write(pb.EdgeFrame(hello=pb.Hello(site="bench", window=4096)))
        await call.read()
        try:
            yield call
        finally:
            call.cancel()


async def measure(
    port: int, pki: Path, settings: LinkSettings, count: int, rate: float | None, label: str
) -> dict[str, float]:
    timings = Timings()
    link = await _edge_link(port, pki, settings, timings)
    cpu_before = time.process_time()
    started = time.perf_counter()
    chunk = 25 if rate is not None else 256  # the edge runtime hands over what one pull brings
    for first in range(0, count, chunk):
        if rate is not None:
            delay = started + first / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        now = time.perf_counter()
        items = []
        for number in range(first, min(first + chunk, count)):
            envelope_id = f"{label}-{number}"
            timings.sent[envelope_id] = now
            items.append(
                (Envelope(envelope_id, "docs.parse", PAYLOAD, "internal", "rule", 1), None)
            )
        await link.send_many(items)
    while timings.done < count:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    await link.stop(2)
    assert timings.rejected == 0
    return {
        "rate": count / elapsed,
        **_quantiles(timings.latencies),
        "edge_cpu_us": cpu / count * 1e6,
    }


def _tls(pki: Path, name: str, *, server: bool) -> ssl.SSLContext:
    """TLS 1.3 with a certificate each way, pinned to the dev CA, as the link has it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(pki / f"{name}.pem", pki / f"{name}.key")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def one_at_a_time(
    port: int, echo_port: int, pki: Path, count: int, rate: float
) -> dict[str, dict[str, float]]:
    """Send then wait for the answer, ``rate`` times a second: the link, a plain gRPC stream
    and the TLS echo, each p50/p99 in ms."""
    import grpc

    from bridge.link.v1 import link_pb2 as pb

    results: dict[str, dict[str, float]] = {}
    reader, writer = await asyncio.open_connection(
        "127.0.0.1",
        echo_port,
        ssl=_tls(pki, "site-bench", server=False),
        server_hostname="localhost",
    )
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        writer.write(PAYLOAD)
        await reader.readexactly(3)
        seconds.append(time.perf_counter() - started)
        await asyncio.sleep(1 / rate)
    writer.close()
    results["TLS echo over asyncio streams"] = _quantiles(seconds)

    async with _plain_stream(port, pki) as call:
        seconds = []
        for number in range(count):
            frame = pb.EdgeFrame()
            frame.batch.envelopes.add(id=f"slow-{number}", capability="docs.parse", payload=PAYLOAD)
            started = time.perf_counter()
            await call.write(frame)
            answer = await call.read()
            while not (isinstance(answer, pb.CloudFrame) and answer.acks.ids):
                if answer is grpc.aio.EOF:
                    raise RuntimeError("the gateway ended the stream")
                answer = await call.read()
            seconds.append(time.perf_counter() - started)
            await asyncio.sleep(1 / rate)
    results["plain gRPC stream"] = _quantiles(seconds)

    timings = Timings()
    link = await _edge_link(port, pki, LinkSettings(), timings)
    for number in range(count):
        envelope = Envelope(f"alone-{number}", "docs.parse", PAYLOAD, "internal", "rule", 1)
        timings.sent[envelope.id] = time.perf_counter()
        await link.send_many([(envelope, None)])
        while timings.done <= number:
            await asyncio.sleep(0.0005)
        await asyncio.sleep(1 / rate)
    await link.stop(2)
    results["the link (its defaults)"] = _quantiles(timings.latencies)
    return results


async def measure_raw(port: int, pki: Path, count: int) -> dict[str, float]:
    """The plainest unbatched client: one envelope per gRPC message, written back to back."""
    from bridge.link.v1 import link_pb2 as pb

    latencies: list[float] = []
    async with _plain_stream(port, pki) as call:
        sent: dict[str, float] = {}
        window = asyncio.Semaphore(4096)

        async def reader() -> None:
            done = 0
            while done < count:
                frame = await call.read()
                assert isinstance(frame, pb.CloudFrame)
                now = time.perf_counter()
                for envelope_id in frame.acks.ids:
                    latencies.append(now - sent.pop(envelope_id))
                    window.release()
                    done += 1

        reading = asyncio.create_task(reader())
        cpu_before = time.process_time()
        started = time.perf_counter()
        for number in range(count):
            await window.acquire()
            envelope_id = f"raw-{number}"
            sent[envelope_id] = time.perf_counter()
            frame = pb.EdgeFrame()
            frame.batch.envelopes.add(id=envelope_id, capability="docs.parse", payload=PAYLOAD)
            await call.write(frame)
        await reading
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
    return {"rate": count / elapsed, **_quantiles(latencies), "edge_cpu_us": cpu / count * 1e6}


async def run(envelopes: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        pki = Path(directory)
        write_dev_pki(pki, ["bench"])
        server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_link", "--serve", str(pki)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert server.stdout is not None
        assert server.stdin is not None
        line = server.stdout.readline()
        port, echo_port = (int(word) for word in line.split()[1:3])
        unbatched = LinkSettings(max_batch=1, linger=0.0, window=4096)
        batched = LinkSettings(max_batch=256, linger=0.002, window=4096)
        raw = await measure_raw(port, pki, max(envelopes // 8, 5000))
        one = await measure(port, pki, unbatched, max(envelopes // 8, 5000), None, "one")
        many = await measure(port, pki, batched, envelopes, None, "many")
        paced = await measure(port, pki, batched, 5000 * 4, 5000.0, "paced")
        alone = await one_at_a_time(port, echo_port, pki, SLOW_COUNT, SLOW_RATE)
        server.stdin.close()
        cpu_line = server.stdout.readline()
        server.wait(10)
        server.stdout.close()
    gateway_cpu = float(cpu_line.split()[1]) if cpu_line.startswith(b"CPU") else float("nan")
    total = 2 * max(envelopes // 8, 5000) + envelopes + 20000 + 2 * SLOW_COUNT
    print(f"1 KiB envelopes, mTLS on loopback, two processes ({os.cpu_count()} cores)")
    print(f"{'mode':<34}{'envelopes/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'edge CPU us/env':>17}")
    rows = (
        ("unbatched, plain gRPC stream", raw),
        ("unbatched, the link (max_batch 1)", one),
        ("batched (256, 2 ms)", many),
        ("batched, paced at 5,000/s", paced),
    )
    for label, figures in rows:
        print(
            f"{label:<34}{figures['rate']:>12,.0f}{figures['p50']:>9.2f}{figures['p99']:>9.2f}{figures['edge_cpu_us']:>17.1f}"
        )
    print(f"gateway CPU over all runs: {gateway_cpu / total * 1e6:.1f} us per envelope")
    ratio = many["rate"] / max(one["rate"], raw["rate"])
    print(
        f"batched / best unbatched: {ratio:.1f}x (target 10x: {'met' if ratio >= 10 else 'MISSED'}); "
        f"batched {many['rate']:,.0f}/s (target 150,000: {'met' if many['rate'] >= 150_000 else 'MISSED'}); "
        f"p99 at 5,000/s {paced['p99']:.2f} ms (target 5 ms: {'met' if paced['p99'] <= 5 else 'MISSED'})"
    )
    floor = alone["TLS echo over asyncio streams"]
    print(
        f"\none envelope at a time at {SLOW_RATE:.0f}/s, send to answer (every process asleep between them)"
    )
    for label, figures in alone.items():
        print(
            f"{label:<34}p50 {figures['p50']:6.2f} ms  p99 {figures['p99']:6.2f} ms  "
            f"({figures['p50'] / floor['p50']:.1f}x / {figures['p99'] / floor['p99']:.1f}x the TLS echo)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=200_000)
    parser.add_argument("--serve", metavar="PKI", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        asyncio.run(serve(Path(arguments.serve)))
    else:
        asyncio.run(run(arguments.envelopes))


if __name__ == "__main__":
    main()
