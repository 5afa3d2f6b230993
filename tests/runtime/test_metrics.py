"""Every metric the documentation names exists, the ones traffic should move do, and both
endpoints pass promtool's lint."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT
from tests.eventually import eventually
from tests.runtime.helpers import claim_and_deny, http_get
from tests.runtime.world import World

# Moved by one allowed round trip and one deny: (metric, labels that must be in the sample).
MOVED = [
    ("rbridge_messages_total", 'decision="allow"'),
    ("rbridge_messages_total", 'decision="deny"'),
    ("rbridge_transforms_total", 'action="tokenize"'),
    ("rbridge_link_connects_total", 'destination="cloud-eu"'),
    ("rbridge_forward_seconds_count", ""),
    ("rbridge_envelopes_total", 'result="stored"'),
    ("rbridge_replies_total", 'result="forwarded"'),
    ("rbridge_site_streams", 'site="plant-a"'),
    ("rbridge_site_window", 'site="plant-a"'),
]


def documented() -> set[str]:
    text = (ROOT / "README.md").read_text() + (ROOT / "deploy" / "README.md").read_text()
    return set(re.findall(r"\b(rbridge_[a-z_]+[a-z])\b", text)) - {"rbridge_build"}


def families(exposition: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", exposition, re.M))


def value(exposition: str, name: str, labels: str) -> float:
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name) and labels in line and not line.startswith("#"):
            sample, _, number = line.rpartition(" ")
            if sample.split("{")[0] == name:
                total += float(number)
    return total


@pytest.mark.slow
async def test_documented_metrics_exist_move_with_traffic_and_pass_promtool(
    world: World,
) -> None:
    gateway, edge = await world.start_linked()
    await claim_and_deny(world, 13)

    async def scraped() -> bool:  # the edge's watch loop counts connects and sets gauges
        text = await http_get(edge.http_port, "/metrics")
        return value(text, "rbridge_link_connects_total", "") > 0

    await eventually(scraped, "the edge's periodic metrics", timeout=30)
    edge_text = await http_get(edge.http_port, "/metrics")
    gateway_text = await http_get(gateway.http_port, "/metrics")
    both = edge_text + gateway_text
    known = families(both)
    assert len(documented()) >= 15, documented()
    missing = [
        name
        for name in sorted(documented())
        if name not in known and name.removesuffix("_total") not in known
    ]
    assert missing == [], f"documented but not exported: {missing}"
    for name, labels in MOVED:
        assert value(both, name, labels) > 0, f"{name}{{{labels}}} did not move"
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/setup-system installs it (Debian's prometheus)"
    for exposition in (edge_text, gateway_text):
        checked = await asyncio.to_thread(
            subprocess.run,
            [promtool, "check", "metrics"],
            input=exposition,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
