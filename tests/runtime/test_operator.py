"""What an operator sees when the configuration on the two sides disagrees."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest
from cryptography import x509

from bridge.up.ports import free_port
from cloud_agent.examples.claims import claims_agents
from edge_agent import Agent, Denied
from tests.runtime.helpers import assert_each_once, http_get, publish
from tests.runtime.world import World

RBRIDGE = Path(sys.executable).parent / "rbridge"


async def test_a_revision_below_the_gateways_minimum_is_explained_everywhere(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent's Denied, the edge's log and the gateway's log all name both revisions, and
    the gateway warns as soon as the site connects."""
    caplog.set_level(logging.WARNING)
    policy = world.root / "policy" / "claims.yaml"
    policy.write_text(policy.read_text().replace("revision: 7", "revision: 1", 1))
    await world.start_gateway()  # minimum revision 5
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    async with Agent("front-desk", nats_url=world.edge_nats.url) as desk:
        with pytest.raises(Denied) as caught:
            await desk.ask_cloud("docs.parse", {"claim_id": "C-1"}, timeout=20)
    denied = caught.value
    assert denied.reason == "cloud:revision-refused"
    assert "policy revision 1 is older than the gateway's minimum 5" in denied.detail
    assert "revision 1 is older than the gateway's minimum 5" in str(denied)
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        "runs policy revision 1, below this gateway's minimum 5" in line for line in messages
    ), messages
    assert any("revision-refused (policy revision 1 is older" in line for line in messages)


async def run_probe(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(RBRIDGE), "probe", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_probe_shows_a_reply_and_a_deny_with_its_rule(world: World) -> None:
    """The operator's smoke test: a sample claim comes back from the cloud agents (exit 0); a
    health record is denied by its rule (exit 0 with --expect deny, 1 without)."""
    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    parser, scorer = claims_agents(world.cloud_nats.url)
    await parser.start()
    await scorer.start()
    try:
        url = world.edge_nats.url
        code, out, err = await run_probe("--nats", url, "--json")
        assert code == 0, err
        outcome = json.loads(out)
        assert outcome["outcome"] == "reply"
        assert outcome["reply"]["claimant"]["name"]  # re-identified on the way back
        code, out, err = await run_probe("--nats", url, "--capability", "health.records.upload")
        assert code == 1
        assert "NOT AS EXPECTED" in out
        assert "denied by rule 'health-data-stays-home'" in out
        code, out, err = await run_probe(
            "--nats", url, "--capability", "health.records.upload", "--expect", "deny"
        )
        assert code == 0, out + err
        assert out.startswith("ok: health.records.upload denied by rule 'health-data-stays-home'")
    finally:
        await scorer.stop()
        await parser.stop()


@pytest.mark.servers
async def test_the_probe_explains_garbage_and_an_unreachable_bus(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1, 2]")
    code, _, err = await run_probe("--payload", str(tmp_path / "list.json"))
    assert (code, "holds a JSON list, not an object" in err) == (2, True)
    code, _, err = await run_probe("--nats", f"nats://127.0.0.1:{free_port()}", "--timeout", "5")
    assert code == 1
    assert "cannot connect to NATS at nats://127.0.0.1:" in err
    assert "Traceback" not in err


async def test_a_rotated_site_certificate_is_used_within_seconds_and_nothing_is_lost(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """New site certificate files: the links reconnect with them within a watch cycle or two
    (the gateway sees the new serial), the log names serial and expiry, the expiry is a metric,
    and every message sent before, during and after arrives once."""
    caplog.set_level(logging.INFO)
    gateway = await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    await publish(world, 0, 200)
    rotated = world.pki.site("plant-a")
    serial = x509.load_pem_x509_certificate(rotated.cert.read_bytes()).serial_number
    await publish(world, 200, 400)
    assert gateway.gateway is not None
    async with asyncio.timeout(20):
        while not any(
            session.identity.serial == serial
            for session in gateway.gateway.sessions.get("plant-a", [])
        ):
            await asyncio.sleep(0.1)
    await publish(world, 400, 600)
    await assert_each_once(world, 600)
    assert any(f"serial {serial:x}, expires" in r.getMessage() for r in caplog.records)
    metrics = await http_get(edge.http_port, "/metrics")
    assert 'rbridge_tls_certificate_expiry_timestamp_seconds{destination="cloud-eu"}' in metrics
