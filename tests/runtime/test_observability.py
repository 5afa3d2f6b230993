"""The dashboards and alert rules of deploy/observability/: they query only metrics the bridge
exports, promtool checks and unit-tests the rules, and a real Prometheus scraping a running edge
bridge and gateway gets series back for what they ask."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from bridge.cloud.metrics import CloudMetrics
from bridge.edge.metrics import EdgeMetrics
from bridge.runtime.streamwatch import StreamWatch
from bridge.up.ports import free_port
from edge_agent import Agent, Denied
from tests.conftest import ROOT
from tests.eventually import eventually
from tests.link.helpers import Results, edge_link
from tests.runtime.helpers import claim_and_deny
from tests.runtime.world import World

OBSERVABILITY = ROOT / "deploy" / "observability"
DASHBOARDS = sorted(OBSERVABILITY.glob("dashboard-*.json"))
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported() -> set[str]:
    """Every sample name the edge bridge and the gateway can export."""
    cloud = CloudMetrics()
    cloud.watch_sites(list)  # the per-site families, read at scrape time (none connected here)
    registries = [EdgeMetrics().registry, cloud.registry, CollectorRegistry()]
    StreamWatch(None, ["RB_OUT"], registries[2])  # type: ignore[arg-type]
    names: set[str] = set()
    for registry in registries:
        for metric in registry.collect():
            names.update(metric.name + suffix for suffix in SUFFIXES[metric.type])
    return names


def queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every dashboard target and alert rule."""
    for path in DASHBOARDS:
        for panel in orjson.loads(path.read_bytes())["panels"]:
            for target in panel["targets"]:
                yield f"{path.name}: {panel['title']}", target["expr"]
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield f"alerts.yml: {rule['alert']}", rule["expr"]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\brbridge_[a-z_]+\b", expr))


def test_dashboards_and_alerts_query_only_exported_metrics() -> None:
    assert [p.name for p in DASHBOARDS] == ["dashboard-edge.json", "dashboard-gateway.json"]
    known = exported()
    found = list(queries())
    assert len(found) >= 25
    for where, expr in found:
        names = metric_names(expr)
        assert names, f"{where}: no rbridge metric in {expr!r}"
        assert names <= known, f"{where}: {sorted(names - known)} are not exported"
    for path in DASHBOARDS:
        board = orjson.loads(path.read_bytes())
        assert board["uid"]
        assert board["title"]
        assert board["schemaVersion"] >= 36
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        variables = {v["name"] for v in board["templating"]["list"]}
        assert variables == {"datasource", "instance"}
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}"
            assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()


@pytest.mark.servers
def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/setup-system installs it (Debian's prometheus)"
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        done = subprocess.run(
            [promtool, *command], cwd=OBSERVABILITY, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr


async def prometheus_query(port: int, expr: str) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = "/api/v1/query?" + urlencode({"query": expr})
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        body = _unchunk(body)
    answer: dict[str, Any] = orjson.loads(body)
    return answer


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


@pytest.mark.slow
async def test_a_real_prometheus_gets_series_for_every_dashboard_and_alert_query(
    world: World, tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: scripts/setup-system installs it (Debian's prometheus)"
    gateway, edge = await world.start_linked()
    await claim_and_deny(world, 5, leak=True)
    # The counters that have a series only once their event happened (Prometheus cannot tell
    # "never" from "not exported"): a refusal by the cloud and a refused site stream.
    async with Agent("desk", nats_url=world.edge_nats.url) as desk:
        with pytest.raises(Denied):  # the policy allows it; the gateway's site may not send it
            await desk.ask_cloud("claims.triage", {"claim_id": "C-8"}, classification="internal")
    stranger = edge_link(
        world.pki, gateway.port, Results(), site="plant-z", files=world.pki.site("plant-z")
    )

    async def refused() -> bool:
        return any(code == "unknown-site" for code, _ in gateway.gateway.refused)  # type: ignore[union-attr]

    await stranger.start()
    try:
        await eventually(refused, "the gateway refusing an unknown site", timeout=30)
    finally:
        await stranger.stop(0)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(OBSERVABILITY / "alerts.yml")],
                "scrape_configs": [
                    {
                        "job_name": "rbridge-edge",
                        "static_configs": [{"targets": [f"127.0.0.1:{edge.http_port}"]}],
                    },
                    {
                        "job_name": "rbridge-gateway",
                        "static_configs": [{"targets": [f"127.0.0.1:{gateway.http_port}"]}],
                    },
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:

        async def both_scraped() -> bool:
            try:
                answer = await prometheus_query(port, 'count(up{job=~"rbridge-.*"} == 1)')
            except (OSError, ValueError):
                return False
            result = answer.get("data", {}).get("result", [])
            return bool(result) and result[0]["value"][1] == "2"

        await eventually(both_scraped, "Prometheus scraping the edge and the gateway", 60)
        for where, expr in queries():
            answer = await prometheus_query(port, expr.replace("$instance", ".*"))
            assert answer["status"] == "success", f"{where}: {answer}"
        wanted = set().union(*(metric_names(expr) for _, expr in queries()))
        empty: list[str] = []

        async def every_metric_has_series() -> bool:  # the stream watch reports every few s
            empty[:] = [
                name
                for name in sorted(wanted)
                if not (await prometheus_query(port, name))["data"]["result"]
            ]
            return not empty

        try:
            await eventually(every_metric_has_series, "a series for every queried metric", 60)
        except AssertionError:
            raise AssertionError(f"no series for {empty}") from None
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
