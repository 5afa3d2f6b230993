"""``rbridge up`` (the whole system on this machine) and ``rbridge agents`` (who is alive)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from bridge.errors import UsageError
from bridge.natsconnect import add_identity_arguments, identity_from


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return parse


def register(commands: Any) -> None:
    up = commands.add_parser(
        "up",
        help="run the whole hybrid system on this machine with the claims scenario",
        description=(
            "Start an edge and a cloud NATS server, development certificates and keys, the cloud "
            "gateway, the edge bridge with the claims policy and the example agents, then feed "
            "sample claims and show what crosses the bridge. Ctrl-C stops everything."
        ),
    )
    up.add_argument("--state-dir", type=Path, default=Path(".rbridge-up"), metavar="DIR",
                    help="where JetStream, certificates, keys, audit and logs go (wiped on start; default .rbridge-up)")  # fmt: skip
    up.add_argument("--policy", type=Path, metavar="FILE", help="policy file (default: the bundled claims policy)")  # fmt: skip
    up.add_argument("--rate", type=_positive(float), default=None, metavar="PER_SECOND",
                    help="messages per second (default 5, or 25 with --once)")  # fmt: skip
    up.add_argument("--once", action="store_true", help="send a fixed number of messages, sum up and exit (0 only if all went as expected)")  # fmt: skip
    up.add_argument("--claims", type=_positive(int), default=50, metavar="N", help="messages to send with --once (default 50)")  # fmt: skip
    up.add_argument("--deny-every", type=_positive(int), default=10, metavar="N",
                    help="every N-th message is a health record that must be denied (default 10)")  # fmt: skip
    up.add_argument(
        "--json", metavar="FILE", help="write the summary as JSON to FILE ('-': stdout)"
    )
    up.add_argument("--otlp-endpoint", metavar="URL", default=None,
                    help="send traces to this OTLP gRPC collector, e.g. http://127.0.0.1:4317 (default: OTEL_EXPORTER_OTLP_ENDPOINT, else no traces)")  # fmt: skip
    up.add_argument("--ha", action="store_true",
                    help="three-node NATS clusters on both sides, two edge bridges and two gateways per jurisdiction: kill any one and the claims keep flowing")  # fmt: skip
    up.set_defaults(run=_up, command_path=["up"])

    agents = commands.add_parser("agents", help="list on-prem agents: live, silent and stopped")
    add_identity_arguments(agents)
    agents.add_argument("--json", action="store_true", help="print JSON lines")
    agents.set_defaults(run=_agents, command_path=["agents"])


def _otlp_endpoint(given: str | None) -> str | None:
    from bridge.tracing import configured_endpoint

    endpoint = configured_endpoint(given)
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise UsageError(
            f"--otlp-endpoint: expected http://host:port or https://host:port, got {endpoint!r}"
        )
    return endpoint


def _up(arguments: argparse.Namespace) -> int:
    try:
        from rich.console import Console

        from bridge.natsserver import nats_server_binary
        from bridge.up.run import Options, run
        from bridge.up.stack import bundled_policy
    except ImportError as error:  # pragma: no cover - depends on how it was installed
        raise UsageError(
            f"'rbridge up' needs the 'up' extra: pip install 'residency-bridge[up]' ({error.name})"
        ) from None
    nats_server_binary()  # a clear error now rather than half a system later
    policy = arguments.policy or bundled_policy()
    if not policy.is_file():
        raise UsageError(f"policy file not found: {policy}")
    to_stdout = arguments.json == "-"
    console = Console(stderr=to_stdout)
    rate = arguments.rate or (25.0 if arguments.once else 5.0)
    options = Options(
        state=arguments.state_dir.resolve(),
        policy=policy,
        count=arguments.claims if arguments.once else None,
        rate=rate,
        deny_every=arguments.deny_every,
        live=not arguments.once and console.is_terminal,
        traces=_otlp_endpoint(arguments.otlp_endpoint),
        ha=arguments.ha,
    )
    summary = asyncio.run(run(options, console))
    text = orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()
    if to_stdout:
        print(text)
    elif arguments.json:
        Path(arguments.json).write_text(text + "\n")
    verdict = "[green]all claims answered and every expected deny happened[/green]"
    if not summary["ok"]:
        verdict = "[red]not everything went as expected (see the summary)[/red]"
    console.print(
        f"{summary['claims']} claims, {summary['replies']} replies, "
        f"{sum(summary['denied_by_rule'].values())} of {summary['denies_expected']} expected denies; "
        f"audit: {summary['audit']['records']} records, {'verified' if summary['audit']['verified'] else 'NOT verified'}"
    )
    if arguments.once:
        console.print(verdict)
        return 0 if summary["ok"] else 1
    return 0


def _agents(arguments: argparse.Namespace) -> int:
    from bridge.cli.agents_view import show

    return asyncio.run(show(identity_from(arguments), as_json=arguments.json, out=sys.stdout))
