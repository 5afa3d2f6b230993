"""Operating the runtimes: replicas, signals, metrics, readiness, configuration checks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.msg import Msg

from tests.conftest import ROOT
from tests.eventually import eventually
from tests.runtime.helpers import (
    assert_each_once,
    audit_records,
    cloud_settings,
    http_get,
    publish,
    spawn,
    stored_count,
    wait_line,
)
from tests.runtime.world import World


@pytest.mark.slow
async def test_two_edge_bridges_share_the_consumer_and_nothing_is_processed_twice(
    world: World,
) -> None:
    """Two replicas on one durable consumer: both work, each message reaches the cloud once."""
    await world.start_gateway()
    first = await world.start_edge(
        instance="a", audit={"dir": world.root / "audit-a"}, http="127.0.0.1:0"
    )
    second = await world.start_edge(
        instance="b", audit={"dir": world.root / "audit-b"}, http="127.0.0.1:0"
    )
    await first.links["cloud-eu"].wait_up(10)
    await second.links["cloud-eu"].wait_up(10)
    await publish(world, 0, 3000)
    await assert_each_once(world, 3000)
    assert first.pulled > 0
    assert second.pulled > 0
    records = audit_records(world, "audit-a") + audit_records(world, "audit-b")
    ids = [record["msg_id"] for record in records]
    assert len(ids) == len(set(ids)) == 3000


async def test_metrics_and_readiness(world: World) -> None:
    """/metrics has the rbridge_ families; /readyz is ready with a link up, and says why not otherwise."""
    gateway = await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    await publish(world, 0, 10)
    await assert_each_once(world, 10)

    async def forwarded() -> bool:  # the forward time is observed as the acks come back
        return "rbridge_forward_seconds_count 10.0" in await http_get(edge.http_port, "/metrics")

    await eventually(forwarded, "ten forwards in the metrics", timeout=30, every=0.05)
    metrics = await http_get(edge.http_port, "/metrics")
    for family in (
        'rbridge_messages_total{decision="allow",direction="outbound",rule="claim-documents-to-eu-parser"} 10.0',
        "rbridge_forward_seconds_bucket",
        'rbridge_policy_revision{policy="claims"} 7.0',
        'rbridge_link_up{destination="cloud-eu"} 1.0',
        'rbridge_link_connects_total{destination="cloud-eu"} 1.0',
        "rbridge_audit_write_errors_total 0.0",
        "rbridge_backlog",
        "rbridge_in_flight",
    ):
        assert family in metrics, family
    assert (await http_get(edge.http_port, "/readyz")).strip() == "ready"
    await gateway.stop()
    world.gateways.clear()
    async with asyncio.timeout(15):
        while "no link up" not in await http_get(edge.http_port, "/readyz"):
            await asyncio.sleep(0.1)
    assert (await http_get(edge.http_port, "/healthz")).strip() == "ok"


@pytest.mark.slow
async def test_sighup_reloads_and_sigterm_stops_cleanly(world: World) -> None:
    """A real `rbridge edge` process: SIGHUP applies a new revision; SIGTERM exits 0 with nothing lost."""
    gateway = await world.start_gateway()
    settings = world.edge_settings(
        destinations={
            "cloud-eu": {"address": f"localhost:{gateway.port}"},
            "cloud-us": {"address": f"localhost:{gateway.port}"},
        },
        policy={"path": world.root / "policy" / "claims.yaml", "watch_seconds": 3600},
    )
    config = world.write_config("edge", settings)
    log = world.root / "edge.log"
    process = spawn(["edge", "--config", str(config)], log)
    try:
        await wait_line(log, "rbridge edge: site plant-a")
        await publish(world, 0, 500)
        policy = world.root / "policy" / "claims.yaml"
        policy.write_text(policy.read_text().replace("revision: 7", "revision: 8"))
        os.kill(process.pid, signal.SIGHUP)
        await wait_line(log, "policy reloaded")
        await publish(world, 500, 1000)
        await assert_each_once(world, 1000)
        os.kill(process.pid, signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert '"revision":8' in text.replace(" ", "")
    assert "Traceback" not in text
    assert await stored_count(world) == 1000


async def test_a_second_edge_on_an_audit_trail_in_use_is_refused(world: World) -> None:
    """Two processes writing one trail would break its chain: the second `rbridge edge` exits 1
    naming the directory, without a traceback, and the running bridge goes on."""
    gateway = await world.start_gateway()
    running = await world.start_edge()
    await running.links["cloud-eu"].wait_up(10)
    settings = world.edge_settings(
        destinations={
            "cloud-eu": {"address": f"localhost:{gateway.port}"},
            "cloud-us": {"address": f"localhost:{gateway.port}"},
        },
        http="127.0.0.1:0",
    )
    config = world.write_config("edge-2", settings)
    second = await asyncio.to_thread(run_cli, "edge", "--config", str(config))
    assert second.returncode == 1, second.stderr
    assert f"the audit trail {world.root / 'audit'} is in use by another process" in second.stderr
    assert "Traceback" not in second.stderr
    await publish(world, 0, 50)
    await assert_each_once(world, 50)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("runtime", "key", "value"),
    [
        ("edge", "log_level", "loud"),
        ("edge", "http", "nowhere"),
        ("edge", "http", "127.0.0.1:99999"),
        ("edge", "streams", {"outbound": {"max_bytes": -7}}),
        ("edge", "destinations", {"cloud-eu": {"address": "localhost:1", "standby": ["nowhere"]}}),
        ("cloud", "log_level", "verbose"),
        ("cloud", "listen", "localhost"),
        ("cloud", "health_listen", ":x"),
        ("cloud", "leak_guard", {"permit": {"docs..parse": ["email"]}}),
        ("cloud", "leak_guard", {"permit": {"hr.>": ["emails"]}}),
        ("cloud", "link", {"turn_envelopes": 0}),
        ("cloud", "link", {"site_buffer_bytes": 4096}),
        ("cloud", "link", {"windows": 10}),
    ],
)
def test_check_config_refuses_what_start_up_would_fail_on(
    world: World, runtime: str, key: str, value: object
) -> None:
    """One settings model checks everything start-up uses: --check-config exits 2 naming the
    key, where it used to pass and the start then failed."""
    if runtime == "edge":
        settings: Any = world.edge_settings(destinations={"cloud-eu": {"address": "localhost:1"}})
    else:
        settings = cloud_settings(world.pki, world.cloud_nats.url)
    data = orjson.loads(settings.model_dump_json(exclude_none=True))
    data[key] = value
    path = world.root / f"{runtime}-bad.yaml"
    path.write_text(orjson.dumps(data).decode())
    result = run_cli(runtime, "--config", str(path), "--check-config")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert key in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_accepts_good_and_explains_bad(world: World, tmp_path: Path) -> None:
    """--check-config: exit 0 for a good file; exit 2 with every problem, or 1 naming a missing key."""
    settings = world.edge_settings(
        destinations={
            "cloud-eu": {"address": "localhost:1"},
            "cloud-us": {"address": "localhost:2"},
        }
    )
    good = world.write_config("edge", settings)
    result = run_cli("edge", "--config", str(good), "--check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: edge bridge for site plant-a, policy")
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: Plant A\ndestinations: {}\ncolour: red\n")
    result = run_cli("edge", "--config", str(bad), "--check-config")
    assert result.returncode == 2
    assert "colour: unknown key" in result.stderr
    assert "site:" in result.stderr
    assert "Traceback" not in result.stderr
    environment = {**os.environ, "RBRIDGE_REPLIES__KEY": "no-such-key"}
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli.main", "edge", "--config", str(good), "--check-config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
    )
    assert result.returncode == 1
    assert "no key named 'no-such-key'" in result.stderr
    # What start-up would refuse, the check refuses: a destination the policy names is missing.
    only_eu = world.write_config(
        "only-eu", world.edge_settings(destinations={"cloud-eu": {"address": "localhost:1"}})
    )
    result = run_cli("edge", "--config", str(only_eu), "--check-config")
    assert result.returncode == 1
    assert "no gateway configured: cloud-us" in result.stderr
    cloud = run_cli("cloud", "--config", str(bad), "--check-config")
    assert cloud.returncode == 2
    assert "tls: Field required" in cloud.stderr
    # The gateway's TLS files are read and checked too, not only looked for.
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    broken = tmp_path / "cloud.yaml"
    broken.write_text(
        f"tls: {{cert: {tmp_path / 'garbage.pem'}, key: {world.pki.root / 'gateway.key'}, "
        f"ca: {world.pki.ca_path}}}\nsites: {{plant-a: {{capabilities: [docs.parse]}}}}\n"
    )
    cloud = run_cli("cloud", "--config", str(broken), "--check-config")
    assert cloud.returncode == 1
    assert "is not a PEM certificate" in cloud.stderr
    assert "Traceback" not in cloud.stderr


def test_check_policy_says_whether_a_reload_would_refuse_the_file(
    world: World, tmp_path: Path
) -> None:
    """`systemctl reload` runs --check-policy first: exit 1 naming the refusal, so the reload
    fails visibly, even while the edge would keep running on its last good policy."""
    policy = tmp_path / "policy" / "claims.yaml"
    policy.parent.mkdir()
    good = (world.root / "policy" / "claims.yaml").read_text()
    policy.write_text(good)
    settings = world.edge_settings(
        policy={"path": policy}, state_dir=tmp_path / "state",
        destinations={"cloud-eu": {"address": "localhost:1"}, "cloud-us": {"address": "localhost:2"}},
    )  # fmt: skip
    config = world.write_config("check-policy", settings)
    result = run_cli("edge", "--config", str(config), "--check-policy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {policy} revision ")
    assert "would be applied" in result.stdout
    # Refused with no last good copy: the problems, exit 1.
    policy.write_text(good.replace("decision: allow", "decision: allow-ish", 1))
    result = run_cli("edge", "--config", str(config), "--check-policy")
    assert result.returncode == 1
    assert "allow-ish" in result.stderr
    # Refused while a last good copy exists (the edge would keep running): still exit 1.
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "last-good-policy.yaml").write_text(good)
    result = run_cli("edge", "--config", str(config), "--check-policy")
    assert result.returncode == 1
    assert f"the policy {policy} would be refused" in result.stderr
    assert "the running policy stays" in result.stderr
    assert "Traceback" not in result.stderr
    # --check-config still passes: the edge can start, on the last good policy.
    result = run_cli("edge", "--config", str(config), "--check-config")
    assert result.returncode == 0
    assert "the edge would start with the last good one" in result.stderr


@pytest.mark.slow
async def test_two_gateway_replicas_serve_two_sites_and_route_their_replies(
    world: World, tmp_path: Path
) -> None:
    """Gateways A and B share the cloud NATS; plant-a uses A, plant-b uses B; replies find their site."""
    from bridge.natsserver import NatsServer

    sites = {"plant-a": {"capabilities": [">"]}, "plant-b": {"capabilities": [">"]}}
    gateway_a = await world.start_gateway("a", sites=sites)
    gateway_b = await world.start_gateway("b", sites=sites)
    other_nats = NatsServer(tmp_path / "plant-b-nats", name="plant-b")
    other_nats.start()
    try:
        edge_a = await world.start_edge(
            destinations={
                "cloud-eu": {"address": f"localhost:{gateway_a.port}"},
                "cloud-us": {"address": f"localhost:{gateway_a.port}"},
            }
        )
        edge_b = await world.start_edge(
            site="plant-b",
            nats={"url": other_nats.url},
            audit={"dir": world.root / "audit-b"},
            destinations={
                "cloud-eu": {"address": f"localhost:{gateway_b.port}"},
                "cloud-us": {"address": f"localhost:{gateway_b.port}"},
            },
            tls={
                "cert": world.pki.root / "site-plant-b.pem",
                "key": world.pki.root / "site-plant-b.key",
                "ca": world.pki.ca_path,
            },
        )
        await edge_a.links["cloud-eu"].wait_up(10)
        await edge_b.links["cloud-eu"].wait_up(10)
        cloud = await nats.connect(world.cloud_nats.url)

        async def answer(message: Msg) -> None:
            headers = message.headers or {}
            await cloud.publish(
                f"rb.reply.{headers['Rb-Site']}",
                b'{"ok":true}',
                headers={"Rb-Reply": headers["Rb-Reply"], "Rb-Capability": "docs.parse"},
            )
            await message.ack()

        await cloud.jetstream().subscribe(
            "rb.in.>", durable="agent", manual_ack=True, cb=answer, stream="RB_IN"
        )
        received: dict[str, int] = {"plant-a": 0, "plant-b": 0}
        for site, url in (("plant-a", world.edge_nats.url), ("plant-b", other_nats.url)):
            local = await nats.connect(url)
            inbox = local.new_inbox()

            async def collect(message: Msg, site: str = site) -> None:
                received[site] += 1

            await local.subscribe(inbox, cb=collect)
            js = local.jetstream()
            for number in range(50):
                await js.publish(
                    "rb.out.docs.parse",
                    orjson.dumps({"claim_id": f"{site}-{number}"}),
                    headers={
                        "Rb-Class": "internal",
                        "Rb-Reply-To": inbox,
                        "Nats-Msg-Id": f"{site}-{number}",
                    },
                )
        async with asyncio.timeout(30):
            while received != {"plant-a": 50, "plant-b": 50}:
                await asyncio.sleep(0.1)
        assert set(gateway_a.gateway.sessions) == {"plant-a"}  # type: ignore[union-attr]
        assert set(gateway_b.gateway.sessions) == {"plant-b"}  # type: ignore[union-attr]
        assert gateway_a.replies.forwarded == 50
        assert gateway_b.replies.forwarded == 50
        await cloud.close()
    finally:
        for edge in world.edges:
            await edge.stop()
        world.edges.clear()
        other_nats.kill()
