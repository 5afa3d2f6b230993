"""A steady flow for minutes: do the stores and the processes stay flat?

Run: .venv/bin/python -m benchmarks.bench_soak [--minutes 10] [--rate 50] [--every 10]

The whole bridge (both NATS servers, `rbridge edge`, `rbridge cloud`), an on-prem agent asking
at ``--rate`` requests/s and a cloud agent answering each at once, for ``--minutes``. Every
``--every`` seconds it samples what `RB_OUT` (edge NATS), `RB_IN` and `RB_REPLY` (cloud NATS)
hold, the size of each server's JetStream directory, and the RSS of every process. At the end:
the samples, the slope of each series over the second half (per minute), and the targets:
every request answered; the streams hold at most what is in flight (one second of the rate);
stores and RSS flat (the second half grows by less than 5 % and 5 MiB). The edge's store also
holds the record of spent reply tokens (digests only), which grows with the flow until its
entries expire after ``replies.ttl_seconds``: shown apart, not held to the flat target.

The first release kept everything: after ten minutes at 50 requests/s RB_OUT held 45,525
messages (33 MB of raw claims), RB_IN 43,129 (49 MB) and RB_REPLY 43,125 (31 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import nats
from nats.aio.client import Client

from benchmarks.bench_e2e import dev_material, rss_mib
from benchmarks.bench_hotpath import Linked, linked, verdict

STREAMS = (("edge NATS", "RB_OUT"), ("cloud NATS", "RB_IN"), ("cloud NATS", "RB_REPLY"))
# The record of spent reply tokens (digests, no payload) grows with the flow until its entries
# expire after replies.ttl_seconds (a day by default): reported, not held to the flat target.
SPENT = ("edge NATS", "KV_rb_reply_tokens")


def directory_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / (1 << 20)


def slope_per_minute(times: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (seconds), per minute."""
    if len(times) < 2:
        return 0.0
    return float(statistics.linear_regression(times, values).slope) * 60


async def sample(bridge: Linked, clients: dict[str, Client]) -> dict[str, float]:
    row: dict[str, float] = {}
    for server, stream in STREAMS:
        state = (await clients[server].jetstream().stream_info(stream)).state
        row[f"{stream} msgs"] = state.messages
        row[f"{stream} MiB"] = state.bytes / (1 << 20)
    state = (await clients[SPENT[0]].jetstream().stream_info(SPENT[1])).state
    row["spent tokens MiB"] = state.bytes / (1 << 20)
    row["edge store MiB"] = directory_mib(bridge.work / "edge-nats")
    row["cloud store MiB"] = directory_mib(bridge.work / "cloud-nats")
    for name, pid in bridge.pids().items():
        row[f"{name} RSS"] = rss_mib(pid)
    return row


async def soak(minutes: float, rate: float, every: float) -> bool:
    work, pki, keys = dev_material("rbridge-soak-")
    async with linked(work / "soak", pki, keys.directory, None) as bridge:
        clients = {
            "edge NATS": await nats.connect(bridge.edge_nats.url),
            "cloud NATS": await nats.connect(bridge.cloud_nats.url),
        }
        samples: list[tuple[float, dict[str, float]]] = []
        started = time.perf_counter()
        duration = minutes * 60
        sent = 0
        next_sample = started
        try:
            while (now := time.perf_counter()) - started < duration:
                due = int((now - started) * rate)
                while sent < due:
                    await bridge.agent.ask(f"s-{sent}")
                    sent += 1
                if now >= next_sample:
                    samples.append((now - started, await sample(bridge, clients)))
                    next_sample += every
                await asyncio.sleep(0.005)
            await bridge.agent.all_answered(120)
            await asyncio.sleep(2.0)  # the last acks settle
            samples.append((time.perf_counter() - started, await sample(bridge, clients)))
        finally:
            for client in clients.values():
                await client.close()
    return report(samples, sent, rate, minutes)


def report(
    samples: list[tuple[float, dict[str, float]]], sent: int, rate: float, minutes: float
) -> bool:
    keys = list(samples[0][1])
    print(f"{sent:,} requests at {rate:g}/s over {minutes:g} min, every one answered")
    header = f"{'t s':>6} " + " ".join(f"{key:>15}" for key in keys)
    print(header)
    for at, row in samples:
        print(f"{at:6.0f} " + " ".join(f"{row[key]:15.1f}" for key in keys))
    half = [(at, row) for at, row in samples if at >= samples[-1][0] / 2]
    print("slope over the second half, per minute:")
    ok = True
    final = samples[-1][1]
    for key in keys:
        values = [row[key] for _, row in half]
        slope = slope_per_minute([at for at, _ in half], values)
        line = f"  {key:<18} {slope:+10.3f}/min   end {final[key]:10.1f}"
        if key in ("spent tokens MiB", "edge store MiB"):
            print(f"{line}   (the spent-token record: expires after replies.ttl_seconds)")
            continue
        if key.endswith("msgs"):
            met = final[key] <= rate  # at most one second of the flow in flight
            line += f"   target <= {rate:g} held at the end: {verdict(met)}"
        else:
            grew = values[-1] - values[0]
            met = grew < max(5.0, 0.05 * values[0])
            line += (
                f"   grew {grew:+.1f} in the second half (target < 5 % and 5 MiB): {verdict(met)}"
            )
        ok = ok and met
        print(line)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--every", type=float, default=10.0)
    arguments = parser.parse_args()
    asyncio.run(soak(arguments.minutes, arguments.rate, arguments.every))


if __name__ == "__main__":
    main()
