"""``rbridge probe``: send one test message through the bridge, as an agent, and show the outcome.

The operator's smoke test on a site: it publishes a sample claim (or a given payload) to
``rb.out.<capability>`` with the agents' identity, waits for the cloud's reply or the bridge's
deny, and says which, how long it took, and (for a deny) the rule, the reason and the detail.
Exit 0 when the outcome is the expected one (a reply by default, ``--expect deny`` for a message
the policy must stop), 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bridge.contract import CLASSIFICATIONS
from bridge.errors import RbridgeError, UsageError
from bridge.natsconnect import add_identity_arguments, identity_from
from edge_agent import Agent, AgentError, Denied
from edge_agent.examples.samples import claim


def register(commands: Any) -> None:
    probe = commands.add_parser(
        "probe",
        help="send one test message through the bridge and show the reply or the deny",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    probe.add_argument(
        "--capability", default="docs.parse", help="capability to send to (default docs.parse)"
    )
    probe.add_argument(
        "--payload",
        metavar="FILE",
        help="JSON object to send ('-': stdin; default: a sample claim)",
    )
    probe.add_argument(
        "--class", dest="classification", default="confidential", choices=CLASSIFICATIONS,
        help="Rb-Class of the message (default confidential)",
    )  # fmt: skip
    probe.add_argument("--expect", choices=("reply", "deny"), default="reply")
    probe.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    probe.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    add_identity_arguments(probe)
    probe.set_defaults(run=_probe, command_path=["probe"])


def _payload(source: str | None) -> dict[str, Any]:
    if source is None:
        return claim(1, random.Random(7))  # noqa: S311 -- a fixed sample, not a secret
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {source}: {error.strerror}") from None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UsageError(f"{source} is not JSON") from None
    if not isinstance(document, dict):
        raise UsageError(f"{source} holds a JSON {type(document).__name__}, not an object")
    return document


def _probe(arguments: argparse.Namespace) -> int:
    if not 0 < arguments.timeout <= 3600:
        raise UsageError(f"--timeout must be between 0 and 3600 seconds, got {arguments.timeout}")
    payload = _payload(arguments.payload)
    try:
        outcome = asyncio.run(_send(arguments, payload))
    except AgentError as error:  # NATS unreachable or the identity refused: one line, exit 1
        raise RbridgeError(str(error)) from None
    ok = outcome["outcome"] == arguments.expect
    outcome["expected"] = arguments.expect
    outcome["ok"] = ok
    if arguments.json:
        print(json.dumps(outcome))
    else:
        print(_describe(outcome, arguments.capability))
    return 0 if ok else 1


async def _send(arguments: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any]:
    identity = identity_from(arguments)
    agent = Agent(
        "rbridge-probe", nats_url=identity.url, nkey_seed=identity.nkey_seed,
        credentials=identity.credentials, heartbeat_seconds=60, connect_timeout=10,
    )  # fmt: skip
    async with agent:
        started = time.monotonic()
        try:
            reply = await agent.ask_cloud(
                arguments.capability,
                payload,
                classification=arguments.classification,
                timeout=arguments.timeout,
            )
        except Denied as denied:
            return {
                "outcome": "deny",
                "rule": denied.rule,
                "reason": denied.reason,
                "detail": denied.detail,
                "seconds": round(time.monotonic() - started, 3),
            }
        except AgentError as error:
            return {"outcome": "error", "error": str(error)}
        return {
            "outcome": "reply",
            "seconds": round(time.monotonic() - started, 3),
            "reply": reply,
        }


def _describe(outcome: dict[str, Any], capability: str) -> str:
    verdict = "ok" if outcome["ok"] else f"NOT AS EXPECTED (expected a {outcome['expected']})"
    if outcome["outcome"] == "reply":
        shown = json.dumps(outcome["reply"], ensure_ascii=True)
        shown = shown if len(shown) <= 400 else shown[:397] + "..."
        return (
            f"{verdict}: {capability} answered by the cloud in {outcome['seconds'] * 1000:.0f} ms\n"
            f"reply: {shown}"
        )
    if outcome["outcome"] == "deny":
        detail = f": {outcome['detail']}" if outcome["detail"] else ""
        return (
            f"{verdict}: {capability} denied by rule {outcome['rule'] or '(none)'!r} "
            f"({outcome['reason']}{detail}) in {outcome['seconds'] * 1000:.0f} ms"
        )
    return f"{verdict}: {outcome['error']}"
