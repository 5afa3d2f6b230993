"""Run the whole system, feed it claims, show it, and sum up."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.aio.msg import Msg
from rich.console import Console
from rich.live import Live

from bridge import tracing
from bridge.audit import verify_paths
from bridge.audit.verify import VerifyReport
from bridge.natsconnect import server_list
from bridge.up.stack import Stack, fetch_text
from bridge.up.traffic import EXPECTED_DENY_RULE, Feeder, Tally
from bridge.up.view import EdgeFigures, render
from cloud_agent.examples.claims import claims_agents
from edge_agent import Agent
from edge_agent.examples.claims import fraud_agent, intake_agent


@dataclass(frozen=True)
class Options:
    state: Path
    policy: Path
    count: int | None
    rate: float
    deny_every: int
    live: bool
    traces: str | None = None  # OTLP endpoint (a local collector), or None: no traces
    ha: bool = False  # three-node clusters, two edge bridges, two gateways per jurisdiction


async def run(options: Options, console: Console) -> dict[str, Any]:
    """Bring the system up, feed it, and return the summary; everything is stopped on return."""
    stack = Stack(options.state, options.policy, options.traces, options.ha)
    if options.traces:  # the example agents run in this process
        tracing.configure("rbridge-up-agents", options.traces)
    tally = Tally()
    cloud_sample: dict[str, Any] = {}
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stopping.set)
    cloud_agents: list[Any] = []
    edge_agents: list[Agent] = []
    observer = None
    try:
        console.print(f"starting in {options.state} …")
        await asyncio.to_thread(stack.prepare)
        await stack.start()
        cloud_agents.extend(claims_agents(stack.cloud_nats.url))
        edge_url = stack.edge_nats.url
        edge_agents.extend(
            [fraud_agent(edge_url), intake_agent(edge_url), Agent("front-desk", nats_url=edge_url)]
        )
        for agent in (*cloud_agents, *edge_agents):
            await agent.start()
        observer = await nats.connect(servers=server_list(stack.cloud_nats.url))

        async def observe(message: Msg) -> None:
            # What the cloud parser received for the sample claim (a copy, not a consumer).
            if cloud_sample or tally.sample_edge is None:
                return
            document = orjson.loads(message.data)
            if document.get("claim_id") == tally.sample_edge["claim_id"]:
                cloud_sample.update(document)

        await observer.subscribe("rb.in.docs.parse", cb=observe)
        where = {
            runtime.name: f"{runtime.base}/metrics  {runtime.base}/readyz"
            + (f"  (pid {runtime.process.pid})" if options.ha and runtime.process else "")
            for runtime in stack.runtimes
        }
        where |= {
            "audit trail": str(stack.audit_dir),
            "logs": str(options.state / "logs"),
            "edge NATS / cloud NATS": f"{stack.edge_nats.url}  {stack.cloud_nats.url}",
            "traces": f"{options.traces} (OTLP)"
            if options.traces
            else "off (--otlp-endpoint URL sends them to a collector)",
        }
        console.print("[bold green]Residency Bridge is up.[/bold green] Ctrl-C stops everything.")
        for label, value in where.items():
            console.print(f"  {label}: {value}")
        if options.ha:
            servers = ", ".join(
                f"{server.name} (pid {server.process.pid})"
                for server in stack.servers()
                if server.process is not None
            )
            console.print(f"  NATS servers: {servers}")
            console.print(
                "  Kill any one NATS server, edge bridge or gateway (kill -9 PID) and watch the "
                "claims keep flowing: every claim is still answered once."
            )
        feeder = asyncio.create_task(
            Feeder(edge_agents[-1], tally, deny_every=options.deny_every).run(
                options.count, options.rate
            )
        )
        stop_wait = asyncio.create_task(stopping.wait())

        async def figures() -> EdgeFigures:
            texts = [
                await asyncio.to_thread(fetch_text, f"{edge.base}/metrics") for edge in stack.edges
            ]
            return EdgeFigures.parse("".join(texts))

        if options.live:
            with Live(render(tally, EdgeFigures(), None, where), console=console) as live:
                while not feeder.done() and not stopping.is_set():
                    await asyncio.wait({feeder, stop_wait}, timeout=0.5)
                    live.update(render(tally, await figures(), cloud_sample or None, where))
        else:
            await asyncio.wait({feeder, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        feeder.cancel()
        stop_wait.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        final = await figures()
        if not options.live:
            console.print(render(tally, final, cloud_sample or None, where))
        return summarize(tally, final, stack, interrupted=stopping.is_set())
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)
        for agent in (*edge_agents, *cloud_agents):
            with contextlib.suppress(Exception):
                await agent.stop()
        if observer is not None:
            with contextlib.suppress(Exception):
                await observer.close()
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(tracing.shutdown)  # the agents' last spans


def summarize(
    tally: Tally, figures: EdgeFigures, stack: Stack, *, interrupted: bool
) -> dict[str, Any]:
    reports = [verify_paths([trail]) for trail in stack.audit_trails() if trail.exists()]
    report = (
        VerifyReport(
            files=sum(r.files for r in reports),
            records=sum(r.records for r in reports),
            problems=[problem for r in reports for problem in r.problems],
        )
        if reports
        else None
    )
    denied_expected = tally.denied_by_rule.get(EXPECTED_DENY_RULE, 0)
    p50, p99 = tally.percentile(0.5), tally.percentile(0.99)
    ok = (
        not interrupted
        and tally.claims_sent > 0
        and tally.replies == tally.claims_sent
        and tally.named_correctly == tally.claims_sent
        and denied_expected == tally.denies_expected
        and not tally.errors
        and report is not None
        and report.ok
    )
    return {
        "ok": ok,
        "interrupted": interrupted,
        "sent": tally.sent,
        "claims": tally.claims_sent,
        "replies": tally.replies,
        "reidentified": tally.named_correctly,
        "denies_expected": tally.denies_expected,
        "denied_by_rule": dict(tally.denied_by_rule),
        "errors": dict(tally.errors),
        "edge": {
            "allowed": figures.outbound("allow"),
            "denied": figures.outbound("deny"),
            "denied_by_rule": figures.denied_by_rule(),
            "transforms": dict(figures.transforms),
        },
        "round_trip_ms": {
            "p50": round(p50 * 1000, 1) if p50 is not None else None,
            "p99": round(p99 * 1000, 1) if p99 is not None else None,
        },
        "audit": {
            "dir": str(stack.audit_dir),
            "records": report.records if report else 0,
            "verified": bool(report and report.ok),
        },
    }
