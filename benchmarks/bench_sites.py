"""Many sites on one gateway pair: quiet sites' service while one site floods, memory and CPU
per site.

Run: .venv/bin/python -m benchmarks.bench_sites [--sites 50] [--rate 4] [--seconds 20]
     [--rounds 3] [--unfair]

One cloud nats-server, two gateway processes (`rbridge cloud`, the sites split between them)
and ``--sites`` quiet sites, each with its own certificate and its own link stream (all in one
client process, as the edges would be on their own hosts), sending 1 KiB requests at ``--rate``
per second each to ``docs.parse``; a cloud agent on ``RB_IN`` answers each at once, and the
round trip is timed from the site's send to the reply arriving back on its link. Measured in
this run, twice: without, then with one more site flooding the first gateway as fast as its
link window lets it (``bulk.ingest``, held in ``RB_IN``; the flood's client process runs at
lower priority, as its host would be another machine). The two alternate for ``--rounds``
rounds and the medians are compared, as the machine's speed drifts over minutes. Targets: with
the flood, each quiet site's throughput and the quiet sites' round-trip p99 stay within 2x of
their values without. ``--unfair`` runs gateways without turns or giving way, to compare.
Also: the gateways' resident memory before sites connect and with every site connected (the
growth per site), and their CPU per site at the quiet rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bench_e2e import cpu_seconds, rss_mib, start_process, stop_all, wait_for_text
from benchmarks.bench_hotpath import CloudAnswerer, percentiles, verdict
from bridge.link import ClientTLS, EdgeLink, Envelope, Hello, LinkSettings, Reject, TLSFiles
from bridge.link.pki import write_dev_pki
from bridge.natsserver import NatsServer
from bridge.up.ports import free_port

TARGET_FACTOR = 2.0
FLOOD = "flood"
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india")


def payload(size: int = 1024) -> bytes:
    text = " ".join(random.choice(WORDS) for _ in range(size // 4))
    return json.dumps({"note": text})[:size].encode()


def site_names(count: int) -> list[str]:
    return [f"site-{number:03d}" for number in range(count)]


# --- the client processes ----------------------------------------------------------------------


class Replies:
    """A site's inbound handler: replies carry the request's id as their token."""

    def __init__(self, sent: dict[str, float], seconds: list[float]) -> None:
        self.sent = sent
        self.seconds = seconds

    async def accept(self, envelopes: Sequence[Envelope]) -> Sequence[Reject | None]:
        now = time.perf_counter()
        for envelope in envelopes:
            started = self.sent.pop(envelope.reply_token, None)
            if started is not None:
                self.seconds.append(now - started)
        return [None] * len(envelopes)


def _link(pki: Path, site: str, port: int, inbound: Any, on_result: Any) -> EdgeLink:
    files = TLSFiles(pki / f"site-{site}.pem", pki / f"site-{site}.key", pki / "ca.pem")
    return EdgeLink(
        f"localhost:{port}",
        ClientTLS(files),
        Hello(site, f"{site}-bench", 1),
        on_result=on_result,
        inbound=inbound,
        settings=LinkSettings(),
    )


async def quiet_worker(
    pki: Path, ports: list[int], count: int, rate: float, seconds: float
) -> None:
    """Connect every quiet site, say UP, wait for a line on stdin, send, print the results."""
    body = payload()
    sent: dict[str, dict[str, float]] = {}
    times: dict[str, list[float]] = {}
    links = []
    for index, site in enumerate(site_names(count)):
        sent[site], times[site] = {}, []
        link = _link(
            pki, site, ports[index % len(ports)], Replies(sent[site], times[site]),
            lambda *_: None,
        )  # fmt: skip
        await link.start()
        links.append(link)
    for link in links:
        await link.wait_up(60)
    print("UP", flush=True)
    await asyncio.to_thread(sys.stdin.readline)

    run = uuid.uuid4().hex[:8]  # ids unique to this run: RB_IN drops a repeated id

    async def paced(link: EdgeLink, site: str) -> None:
        start = time.perf_counter() + random.random() / rate
        number = 0
        while (due := start + number / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            msg_id = f"{site}/{run}/{number}"
            sent[site][msg_id] = time.perf_counter()
            await link.send(Envelope(msg_id, "docs.parse", body, "internal", "bench", 1, msg_id))
            number += 1

    await asyncio.gather(
        *(paced(link, site) for link, site in zip(links, site_names(count), strict=True))
    )
    deadline = time.monotonic() + 30
    while any(sent.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for link in links:
        await link.stop(1)
    print(json.dumps({"times": times, "unanswered": sum(len(v) for v in sent.values())}))


async def flood_worker(pki: Path, port: int, seconds: float) -> None:
    """One site sending as fast as its window lets it, for ``seconds``; prints envelopes/s."""
    acked = 0

    def counted(_token: Any, _envelope: Envelope, reject: Reject | None) -> None:
        nonlocal acked
        acked += reject is None

    link = _link(pki, FLOOD, port, None, counted)
    await link.start()
    await link.wait_up(60)
    print("UP", flush=True)
    body = payload()
    run = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    number = 0
    while time.perf_counter() - started < seconds:
        for _ in range(256):
            await link.send(
                Envelope(f"f-{run}-{number}", "bulk.ingest", body, "internal", "bench", 1)
            )
            number += 1
    elapsed = time.perf_counter() - started
    await link.stop(5)
    print(json.dumps({"acked": acked, "per_second": acked / elapsed}))


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Phase:
    p50_ms: float
    p99_ms: float
    per_site: list[float]  # replies per second, by site
    unanswered: int
    gateway_cpu: float  # seconds over the phase, both gateways
    flood_per_second: float = 0.0
    by_gateway: list[tuple[float, float]] = field(default_factory=list)  # p50, p99 (ms)
    busy: dict[str, float] = field(default_factory=dict)  # CPU seconds by process


def gateway_config(
    work: Path, pki: Path, nats_url: str, index: int, sites: list[str], unfair: bool
) -> Path:
    port, path = free_port(), work / f"cloud-{index}.yaml"
    config = {
        "name": f"gateway-{index}", "listen": f"127.0.0.1:{port}", "http": "127.0.0.1:0",
        "tls": {"cert": str(pki / "gateway.pem"), "key": str(pki / "gateway.key"), "ca": str(pki / "ca.pem")},
        "sites": {site: {"capabilities": ["docs.parse"]} for site in sites}
        | {FLOOD: {"capabilities": ["bulk.ingest"]}},
        "nats": {"url": nats_url}, "log_level": "info",
        "streams": {"inbound": {"max_bytes": -1}, "replies": {"max_bytes": -1}},
    }  # fmt: skip
    if unfair:  # about the first release: a stream's whole backlog in one go, no turns
        config["link"] = {"turn_envelopes": 4096, "concurrent_turns": 64, "busy_share": 1}
    path.write_text(yaml.safe_dump(config))
    return path


async def start_flood(pki: Path, port: int, seconds: float) -> subprocess.Popen[bytes]:
    """The flood's client, at a lower priority: its host would be another machine."""
    flooder = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_sites", "--flood-worker", str(pki), str(port),
         str(seconds)],
        stdout=subprocess.PIPE, preexec_fn=lambda: os.nice(10),
    )  # fmt: skip
    assert flooder.stdout is not None
    assert (await asyncio.to_thread(flooder.stdout.readline)).strip() == b"UP"
    return flooder


async def flood_result(flooder: subprocess.Popen[bytes]) -> float:
    assert flooder.stdout is not None
    line = await asyncio.to_thread(flooder.stdout.readline)
    flooder.wait(30)
    return float(json.loads(line.decode())["per_second"])


async def phase(
    pki: Path,
    nats_pid: int,
    ports: list[int],
    gateways: list[subprocess.Popen[bytes]],
    args: argparse.Namespace,
    flood: bool,
    memory: dict[str, float],
) -> Phase:
    worker = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_sites", "--quiet-worker", str(pki),
         ",".join(map(str, ports)), str(args.sites), str(args.rate), str(args.seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert worker.stdout is not None
    assert worker.stdin is not None
    assert (await asyncio.to_thread(worker.stdout.readline)).strip() == b"UP"
    if not flood and "connected" not in memory:  # the first time, before any flood
        memory["connected"] = sum(rss_mib(g.pid) for g in gateways)
    flooder = None
    if flood:
        flooder = await start_flood(pki, ports[0], args.seconds + 6)
        await asyncio.sleep(3)  # the flood under way before the quiet sites start
    watched = {f"gateway {i}": g.pid for i, g in enumerate(gateways)} | {
        "NATS": nats_pid,
        "quiet sites' client": worker.pid,
    }
    if flooder is not None:
        watched["flood's client"] = flooder.pid
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    worker.stdin.write(b"go\n")
    worker.stdin.flush()
    out = json.loads((await asyncio.to_thread(worker.stdout.readline)).decode())
    busy = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}
    cpu = busy["gateway 0"] + busy["gateway 1"]
    worker.wait(30)
    flood_rate = 0.0 if flooder is None else await flood_result(flooder)
    every = [s for times in out["times"].values() for s in times]
    p50, p99 = percentiles(every)
    names = site_names(args.sites)
    by_gateway = [
        percentiles([s for site in names[index :: len(ports)] for s in out["times"][site]])
        for index in range(len(ports))
    ]
    per_site = [len(times) / args.seconds for times in out["times"].values()]
    return Phase(p50, p99, per_site, out["unanswered"], cpu, flood_rate, by_gateway, busy)


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="rbridge-sites-"))
    sites = site_names(args.sites)
    write_dev_pki(work / "pki", [*sites, FLOOD])
    pki = work / "pki"
    nats_server = NatsServer(work / "nats", name="cloud")
    nats_server.start()
    gateways: list[subprocess.Popen[bytes]] = []
    answerer = CloudAnswerer(nats_server.url)
    try:
        ports = []
        for index in range(2):
            config = gateway_config(work, pki, nats_server.url, index, sites, args.unfair)
            ports.append(yaml.safe_load(config.read_text())["listen"].rsplit(":", 1)[1])
            log = work / f"cloud-{index}.log"
            gateways.append(
                start_process(["-m", "bridge.cli.main", "cloud", "--config", str(config)], log)
            )
            await wait_for_text(log, "rbridge cloud: link on")
        await answerer.start("rb.in.docs.parse")
        memory = {"started": sum(rss_mib(g.pid) for g in gateways)}
        ports_int = [int(port) for port in ports]
        assert nats_server.process is not None
        nats_pid = nats_server.process.pid
        rounds = []
        for _ in range(args.rounds):  # alternated: the machine's speed drifts over minutes
            alone = await phase(pki, nats_pid, ports_int, gateways, args, False, memory)
            rounds.append(
                (alone, await phase(pki, nats_pid, ports_int, gateways, args, True, memory))
            )
        flood_alone = await flood_result(await start_flood(pki, ports_int[0], args.seconds))
    finally:
        await answerer.stop()
        stop_all(*gateways)
        nats_server.kill()
    report(args, rounds, flood_alone, memory)


def report(
    args: argparse.Namespace,
    rounds: list[tuple[Phase, Phase]],
    flood_alone: float,
    memory: dict[str, float],
) -> None:
    def median(figure: Callable[[Phase], float], flooded: bool) -> float:
        return statistics.median(figure(pair[flooded]) for pair in rounds)

    sent = args.sites * args.rate
    if args.unfair:
        print("\nGATEWAYS WITHOUT TURNS (--unfair)")
    print(f"\n{args.sites} quiet sites at {args.rate:g} requests/s each ({sent:g}/s), two gateways, "
          f"1 KiB requests answered at once by a cloud agent; {len(rounds)} rounds of "
          f"{args.seconds:g} s alone, then {args.seconds:g} s with the flood; medians of the rounds")  # fmt: skip
    print(f"{'':40}{'alone':>10}{'with flood':>12}{'ratio':>8}")
    figures: list[tuple[str, Callable[[Phase], float]]] = [
        ("round trip p50 (ms)", lambda p: p.p50_ms),
        ("round trip p99 (ms)", lambda p: p.p99_ms),
        ("  gateway 0 (the flood's) p50 (ms)", lambda p: p.by_gateway[0][0]),
        ("  gateway 0 (the flood's) p99 (ms)", lambda p: p.by_gateway[0][1]),
        ("  gateway 1 p50 (ms)", lambda p: p.by_gateway[1][0]),
        ("  gateway 1 p99 (ms)", lambda p: p.by_gateway[1][1]),
        ("slowest quiet site (replies/s)", lambda p: min(p.per_site)),
        ("mean quiet site (replies/s)", lambda p: statistics.mean(p.per_site)),
    ]
    for name, figure in figures:
        alone, flooded = median(figure, False), median(figure, True)
        print(f"{name:40}{alone:10.2f}{flooded:12.2f}{flooded / alone:8.2f}")
    print("p99 by round (alone / with the flood, ms): " + ", ".join(
        f"{a.p99_ms:.1f} / {f.p99_ms:.1f}" for a, f in rounds))  # fmt: skip
    for flooded in (False, True):
        shares = ", ".join(
            f"{name} {statistics.median(pair[flooded].busy.get(name, 0) for pair in rounds) / args.seconds * 100:.0f} %"
            for name in rounds[0][True].busy
        )
        print(f"CPU {'with the flood' if flooded else 'alone'} (% of a core): {shares}")
    unanswered = sum(a.unanswered + f.unanswered for a, f in rounds)
    print(f"unanswered requests: {unanswered}")
    with_quiet = median(lambda p: p.flood_per_second, True)
    print(f"flood site: {flood_alone:,.0f} envelopes/s stored alone, {with_quiet:,.0f} beside "
          f"the quiet sites")  # fmt: skip
    p99_ratio = median(lambda p: p.p99_ms, True) / median(lambda p: p.p99_ms, False)
    rate_ratio = median(lambda p: min(p.per_site), True) / median(lambda p: min(p.per_site), False)
    print(f"target: quiet round-trip p99 within {TARGET_FACTOR:g}x with the flood: "
          f"{p99_ratio:.2f}x {verdict(p99_ratio <= TARGET_FACTOR)}")  # fmt: skip
    print(f"target: every quiet site's throughput within {TARGET_FACTOR:g}x with the flood: "
          f"{rate_ratio:.2f}x {verdict(rate_ratio * TARGET_FACTOR >= 1)}")  # fmt: skip
    per_site_kib = (memory["connected"] - memory["started"]) / args.sites * 1024
    print(f"gateway memory (both): {memory['started']:.1f} MiB started, "
          f"{memory['connected']:.1f} MiB with {args.sites} sites connected: "
          f"{per_site_kib:.0f} KiB per connected site")  # fmt: skip
    cpu = median(lambda p: p.gateway_cpu, False)
    print(f"gateway CPU (both) at the quiet rate: {cpu / args.seconds / args.sites * 100:.3f} % "
          f"of a core per site, {cpu / (sent * args.seconds) * 1e6:.0f} us per request and its "
          f"reply")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--rate", type=float, default=4.0, help="requests/s per quiet site")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="alone/flooded phase pairs")
    parser.add_argument(
        "--unfair", action="store_true",
        help="gateways without turns (each stream stores its whole backlog at once), to compare",
    )  # fmt: skip
    parser.add_argument("--quiet-worker", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--flood-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quiet_worker:
        pki, ports, count, rate, seconds = args.quiet_worker
        asyncio.run(
            quiet_worker(
                Path(pki), [int(p) for p in ports.split(",")], int(count), float(rate),
                float(seconds),
            )
        )  # fmt: skip
    elif args.flood_worker:
        pki, port, seconds = args.flood_worker
        asyncio.run(flood_worker(Path(pki), int(port), float(seconds)))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
