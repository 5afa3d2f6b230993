"""Link speed: 1 KiB envelopes over mutual TLS on loopback, edge and gateway in two processes.

Run: .venv/bin/python -m benchmarks.bench_link [--envelopes N]

Measures, in one run: (1) one envelope per gRPC message, both as a plain gRPC stream client and
as the link with max_batch 1 (the baselines); (2) the batched link (batches of up to 256, 2 ms linger, window 4096); each as envelopes/s and
p50/p99 from send() to ack; then (3) the batched link paced at 5,000 envelopes/s, for latency.
Targets: batched >= 150,000 envelopes/s and >= 10x the unbatched figure; p99 at 5,000/s <= 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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
    print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), stop.set)  # parent closes stdin: report CPU and leave
    await stop.wait()
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


async def measure(
    port: int, pki: Path, settings: LinkSettings, count: int, rate: float | None, label: str
) -> dict[str, float]:
    timings = Timings()
    link = EdgeLink(
        f"localhost:{port}",
        ClientTLS(TLSFiles(pki / "site-bench.pem", pki / "site-bench.key", pki / "ca.pem")),
        Hello("bench"),
        on_result=timings,
        settings=settings,
    )
    await link.start()
    await link.wait_up(20)
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
        "p50": statistics.median(timings.latencies) * 1000,
        "p99": percentile(timings.latencies, 0.99),
        "edge_cpu_us": cpu / count * 1e6,
    }


async def measure_raw(port: int, pki: Path, count: int) -> dict[str, float]:
    """The plainest unbatched client: one envelope per gRPC message, written back to back."""
    import grpc

    from bridge.link.v1 import link_pb2 as pb
    from bridge.link.v1 import link_pb2_grpc as pb_grpc

    credentials = grpc.ssl_channel_credentials(
        (pki / "ca.pem").read_bytes(),
        (pki / "site-bench.key").read_bytes(),
        (pki / "site-bench.pem").read_bytes(),
    )
    latencies: list[float] = []
    async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
        call = pb_grpc.LinkStub(channel).Connect()
        await call.write(pb.EdgeFrame(hello=pb.Hello(site="bench", window=4096)))
        await call.read()
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
        call.cancel()
    return {
        "rate": count / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": percentile(latencies, 0.99),
        "edge_cpu_us": cpu / count * 1e6,
    }


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
        port = int(line.split()[1])
        unbatched = LinkSettings(max_batch=1, linger=0.0, window=4096)
        batched = LinkSettings(max_batch=256, linger=0.002, window=4096)
        raw = await measure_raw(port, pki, max(envelopes // 8, 5000))
        one = await measure(port, pki, unbatched, max(envelopes // 8, 5000), None, "one")
        many = await measure(port, pki, batched, envelopes, None, "many")
        paced = await measure(port, pki, batched, 5000 * 4, 5000.0, "paced")
        server.stdin.close()
        cpu_line = server.stdout.readline()
        server.wait(10)
        server.stdout.close()
    gateway_cpu = float(cpu_line.split()[1]) if cpu_line.startswith(b"CPU") else float("nan")
    total = 2 * max(envelopes // 8, 5000) + envelopes + 20000
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
