"""Residency, leaks, bad input and policy reload, end to end on real NATS servers."""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
from pathlib import Path

import nats
import orjson
import pytest

from bridge.audit import verify_paths
from tests.conftest import POLICIES
from tests.runtime.helpers import audit_records, http_get, settled, stream_messages
from tests.runtime.world import World, queue_of


async def test_eu_only_messages_never_reach_the_us_gateway_even_while_the_eu_one_is_down(
    world: World, tmp_path: Path
) -> None:
    """Two gateways on two cloud NATS: docs.parse (EU only) waits on-prem while EU is down, then goes to EU."""
    us_nats_server = world.cloud_nats.__class__(tmp_path / "us-nats", name="us")
    us_nats_server.start()
    try:
        eu = await world.start_gateway("eu")
        us = await world.start_gateway(
            "us", nats={"url": us_nats_server.url}, sites={"plant-a": {"capabilities": [">"]}}
        )
        destinations = {
            "cloud-eu": {"address": f"localhost:{eu.port}", "jurisdiction": "EU"},
            "cloud-us": {"address": f"localhost:{us.port}", "jurisdiction": "US"},
        }
        edge = await world.start_edge(destinations=destinations)
        await edge.links["cloud-us"].wait_up(10)
        await edge.links["cloud-eu"].wait_up(10)
        eu_port = eu.port
        await eu.stop()
        del world.gateways["eu"]
        async with asyncio.timeout(15):
            while edge.links["cloud-eu"].state == "up":
                await asyncio.sleep(0.05)
        local = await nats.connect(world.edge_nats.url)
        js = local.jetstream()
        for number in range(50):
            await js.publish(
                "rb.out.docs.parse",
                orjson.dumps({"claim_id": f"C-{number}"}),
                headers={"Rb-Class": "internal", "Nats-Msg-Id": f"eu-{number}"},
            )
        for number in range(20):
            await js.publish(
                "rb.out.stats.weekly",
                orjson.dumps({"n": number}),
                headers={"Rb-Class": "public", "Nats-Msg-Id": f"st-{number}"},
            )
        await asyncio.sleep(3)
        us_seen = await stream_messages(us_nats_server.url, "RB_IN")
        assert all(m.subject == "rb.in.stats.weekly" for m in us_seen), (
            "an EU-only message reached the US"
        )
        info = await js.consumer_info("RB_OUT", "rbridge-edge")
        assert info.num_pending + info.num_ack_pending >= 50, "EU-only messages must wait on-prem"
        # EU comes back: the waiting messages go there, and only there.
        await world.start_gateway("eu", listen=f"127.0.0.1:{eu_port}")
        await settled(world, 50)
        eu_seen = await stream_messages(world.cloud_nats.url, "RB_IN")
        assert (
            sorted(m.subject for m in eu_seen if m.subject == "rb.in.docs.parse")
            == ["rb.in.docs.parse"] * 50
        )
        us_seen = await stream_messages(us_nats_server.url, "RB_IN")
        assert not any(m.subject == "rb.in.docs.parse" for m in us_seen)
        assert len({(m.headers or {})["Nats-Msg-Id"] for m in eu_seen + us_seen}) == len(
            eu_seen + us_seen
        )
        await local.close()
    finally:
        for gateway in list(world.gateways.values()):
            await gateway.stop()
        world.gateways.clear()
        us_nats_server.kill()


def canary_claim(rng: random.Random, number: int) -> tuple[dict[str, object], list[str]]:
    ssn = f"{rng.randint(100, 665):03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"
    email = f"canary{number}x{rng.randint(0, 1 << 30):x}@example.org"
    name = f"Canaryname{number}q{rng.randint(0, 1 << 30):x}"
    card = luhn_card(rng)
    claim: dict[str, object] = {
        "claim_id": f"CLM-{number}",
        "claimant": {"name": name, "ssn": ssn},
        "policy_number": f"PN-{rng.randint(10**7, 10**8 - 1)}",
        "notes": f"Reach me at {email} or pay with {card}.",
    }
    return claim, [ssn, email, name, card, str(claim["policy_number"])]


def luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randint(0, 9) for _ in range(14)]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = digit * 2 if position % 2 == 0 else digit
        total += value - 9 if value > 9 else value
    digits.append((10 - total % 10) % 10)
    text = "".join(map(str, digits))
    return " ".join(text[i : i + 4] for i in range(0, 16, 4))


async def test_canary_values_never_appear_in_the_cloud_logs_audit_or_metrics(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """2000 claims with unique fake SSNs, cards, e-mails and names: none of them anywhere outside."""
    caplog.set_level(logging.DEBUG)
    gateway = await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    rng = random.Random(20261128)
    canaries: list[str] = []
    local = await nats.connect(world.edge_nats.url)
    js = local.jetstream()
    count = 2000
    for number in range(count):
        claim, planted = canary_claim(rng, number)
        canaries += planted
        await js.publish(
            "rb.out.docs.parse",
            orjson.dumps(claim),
            headers={"Rb-Class": "confidential", "Nats-Msg-Id": f"c-{number}"},
        )
    # A few that must be denied, carrying canaries in unmasked fields.
    for number in range(count, count + 20):
        claim, planted = canary_claim(rng, number)
        canaries += planted
        claim["contact"] = planted[1]
        await js.publish(
            "rb.out.docs.parse", orjson.dumps(claim), headers={"Rb-Class": "confidential"}
        )
    await settled(world, count)
    await local.close()
    cloud_messages = await stream_messages(world.cloud_nats.url, "RB_IN")
    assert len(cloud_messages) == count
    outside = b"\n".join((m.data or b"") + orjson.dumps(m.headers or {}) for m in cloud_messages)
    audit = b"".join(path.read_bytes() for path in (world.root / "audit").glob("*.jsonl"))
    logs = "\n".join(
        record.getMessage() + str(record.__dict__.get("msg_id", "")) for record in caplog.records
    ).encode()
    metrics = (
        await http_get(edge.http_port, "/metrics") + await http_get(gateway.http_port, "/metrics")
    ).encode()
    leaked = [
        value
        for value in canaries
        if value.encode() in outside
        or value.encode() in audit
        or value.encode() in logs
        or value.encode() in metrics
    ]
    assert leaked == []
    assert verify_paths([world.root / "audit"]).ok
    assert (
        'rbridge_messages_total{decision="deny",direction="outbound",rule="claim-documents-to-eu-parser"} 20.0'
        in metrics.decode()
    )


async def test_bad_input_on_the_bus_is_denied_with_a_reason_and_nothing_is_lost(
    world: World,
) -> None:
    """Garbage, huge, deep, invalid UTF-8, CR/LF headers, forged headers: each answered; good ones flow."""
    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    local = await nats.connect(world.edge_nats.url)
    inbox = local.new_inbox()
    notices = await queue_of(local, f"{inbox}.>")
    js = local.jetstream()
    bad = {
        "not-json": (b"claimant=Jane", {}),
        "huge": (b'{"notes":"' + b"x" * (2 << 20) + b'"}', {}),
        "deep": (b'{"a":' * 200 + b"1" + b"}" * 200, {}),
        "utf8": (b'{"a":"\xff\xfe"}', {}),
        "dup": (b'{"a":1,"a":2}', {}),
        "nul": (b'{"a":1}', {"X-Note": "a\x00b"}),
    }
    for name, (payload, headers) in bad.items():
        await js.publish(
            "rb.out.docs.parse",
            payload,
            headers={"Rb-Class": "internal", "Rb-Reply-To": f"{inbox}.{name}", **headers},
        )
    forged = {
        "Rb-Class": "internal",
        "Rb-Site": "plant-z",
        "Rb-Rule": "forged",
        "Nats-Forged": "x",
        "rb-policy": "999",
        "X-Ok": "kept",
    }
    await js.publish(
        "rb.out.docs.parse", b'{"claim_id":"ok-1"}', headers={**forged, "Nats-Msg-Id": "ok-1"}
    )
    # CR/LF cannot split a header on the bus: NATS turns them into spaces, so no header is injected.
    await js.publish(
        "rb.out.docs.parse", b'{"claim_id":"ok-2"}',
        headers={"Rb-Class": "internal", "Nats-Msg-Id": "ok-2", "X-Note": "a\r\nRb-Class: public"},
    )  # fmt: skip
    reasons: dict[str, str] = {}
    async with asyncio.timeout(20):
        while len(reasons) < len(bad) - 1:  # the CR/LF one has no trustworthy reply subject
            notice = await notices.get()
            reasons[notice.subject.rsplit(".", 1)[1]] = (notice.headers or {})["Rb-Reason"]
    assert reasons["not-json"] == "payload:not-json"
    assert reasons["huge"] == "payload:too-large"
    assert reasons["deep"] == "payload:too-deep"
    assert reasons["utf8"] == "payload:not-utf8"
    assert reasons["dup"] == "payload:duplicate-key"
    await settled(world, 2)
    stored_messages = {
        (m.headers or {})["Nats-Msg-Id"]: m
        for m in await stream_messages(world.cloud_nats.url, "RB_IN")
    }
    assert sorted(stored_messages) == ["plant-a/ok-1", "plant-a/ok-2"]
    injected = stored_messages["plant-a/ok-2"].headers or {}
    assert injected["Rb-Class"] == "internal"
    assert "\r" not in injected["X-Note"]
    assert "\n" not in injected["X-Note"]
    headers = stored_messages["plant-a/ok-1"].headers or {}
    assert (headers["Rb-Site"], headers["Rb-Rule"], headers["X-Ok"]) == (
        "plant-a",
        "claim-documents-to-eu-parser",
        "kept",
    )
    assert "rb-policy" not in headers
    assert "Nats-Forged" not in headers
    records = audit_records(world)
    assert sorted(r["reason"] for r in records if r["decision"] == "deny") == sorted(
        [
            "payload:not-json",
            "payload:too-large",
            "payload:too-deep",
            "payload:not-utf8",
            "payload:duplicate-key",
            "bad-header",
        ]
    )
    assert edge.not_ready() == []
    await local.close()


async def test_policy_reload_under_load_never_splits_a_batch(world: World) -> None:
    """While messages flow, a new revision takes over; every record names one whole revision."""
    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    local = await nats.connect(world.edge_nats.url)
    js = local.jetstream()
    policy_file = world.root / "policy" / "claims.yaml"

    async def publish(first: int, last: int) -> None:
        for number in range(first, last):
            await js.publish(
                "rb.out.docs.parse",
                orjson.dumps({"claim_id": f"R-{number}"}),
                headers={"Rb-Class": "internal", "Nats-Msg-Id": f"r-{number}"},
            )

    await publish(0, 1500)
    bumped = policy_file.read_text().replace("revision: 7", "revision: 8")
    staging = policy_file.with_suffix(".tmp")
    staging.write_text(bumped)
    staging.replace(policy_file)  # atomic, as an operator's deploy should be
    await publish(1500, 3000)
    # A broken policy is refused; the last good one keeps running.
    broken = world.root / "policy" / "broken.tmp"
    broken.write_text(
        bumped.replace("revision: 8", "revision: 9").replace(
            "decision: deny", "decision: perhaps", 1
        )
    )
    broken.replace(policy_file)
    await publish(3000, 3500)
    await settled(world, 3500, timeout=60)
    await local.close()
    records = audit_records(world)
    assert len(records) == 3500
    assert {r["revision"] for r in records} == {7, 8}
    assert edge.policy.current is not None
    assert edge.policy.current.revision == 8
    assert edge.policy.failures >= 1
    assert "problem" in edge.policy.last_error
    stored = await stream_messages(world.cloud_nats.url, "RB_IN")
    assert {(m.headers or {})["Rb-Policy"] for m in stored} == {"7", "8"}
    shutil.copy(POLICIES / "claims.yaml", policy_file)
