"""The product end to end on real NATS servers and a real mTLS link."""

from __future__ import annotations

import asyncio

import nats
import orjson
from nats.aio.msg import Msg

from bridge.audit import verify_paths
from tests.runtime.helpers import audit_records, settled
from tests.runtime.world import World, queue_of

CLAIM = {
    "claim_id": "CLM-2026-1",
    "policy_number": "PN-88213377",
    "claimant": {"name": "Jane Doe", "ssn": "123-45-6789"},
    "notes": "Call me on +44 20 7946 0958.",
}


async def cloud_parser(world: World, stop: asyncio.Event, seen: list[Msg]) -> None:
    """A cloud agent: reads rb.in.docs.parse, answers on rb.reply.<site> with the token."""
    connection = await nats.connect(world.cloud_nats.url)
    js = connection.jetstream()
    subscription = await js.pull_subscribe("rb.in.docs.parse", durable="parser", stream="RB_IN")
    while not stop.is_set():
        try:
            messages = await subscription.fetch(10, timeout=0.5)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        for message in messages:
            seen.append(message)
            document = orjson.loads(message.data)
            reply = {
                "claimant": document.get("claimant", {}),
                "fields": {"claim_id": document.get("claim_id")},
            }
            headers = message.headers or {}
            await js.publish(
                f"rb.reply.{headers['Rb-Site']}",
                orjson.dumps(reply),
                headers={
                    "Rb-Reply": headers["Rb-Reply"],
                    "Rb-Capability": "docs.parse",
                    "Nats-Msg-Id": f"re-{headers['Nats-Msg-Id']}",
                },
            )
            await message.ack()
    await connection.close()


async def test_a_claim_goes_out_redacted_and_the_reply_comes_back_reidentified(
    world: World,
) -> None:
    """rb.out.docs.parse → policy → mTLS link → RB_IN → cloud agent → reply → the re-identified answer."""
    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    stop, seen = asyncio.Event(), list[Msg]()
    agent = asyncio.create_task(cloud_parser(world, stop, seen))
    local = await nats.connect(world.edge_nats.url)
    inbox = local.new_inbox()
    replies = await queue_of(local, inbox)
    js = local.jetstream()
    await js.publish(
        "rb.out.docs.parse",
        orjson.dumps(CLAIM),
        headers={"Rb-Class": "confidential", "Rb-Reply-To": inbox, "Nats-Msg-Id": "claim-1"},
    )
    reply = await asyncio.wait_for(replies.get(), 20)
    stop.set()
    await agent
    # What the cloud saw: redacted.
    (stored,) = seen
    cloud_view = orjson.loads(stored.data)
    assert "ssn" not in cloud_view["claimant"]
    assert cloud_view["claimant"]["name"].startswith("tok:v1:")
    assert cloud_view["policy_number"].startswith("hmac:v1:")
    assert cloud_view["notes"] == "Call me on [phone]."
    for secret in (b"123-45-6789", b"Jane Doe", b"PN-88213377", b"7946 0958"):
        assert secret not in stored.data
    assert (stored.headers or {})["Nats-Msg-Id"] == "plant-a/claim-1"
    # What the edge agent got back: the name re-identified, status ok.
    answer = orjson.loads(reply.data)
    assert answer["claimant"]["name"] == "Jane Doe"
    assert (reply.headers or {})["Rb-Status"] == "ok"
    assert (reply.headers or {})["Rb-Msg-Id"] == "plant-a/claim-1"
    # RB_OUT acked (the server applies acks in turn: waited for), audit intact and value-free.
    await settled(world, 0)  # (RB_IN gave the request to the cloud agent: held no more)
    await local.close()
    report = verify_paths([world.root / "audit"])
    assert report.ok, report.problems
    assert report.records == 2
    audit_text = (world.root / "audit" / "audit.jsonl").read_text()
    for value in ("123-45-6789", "Jane Doe", "PN-88213377"):
        assert value not in audit_text


async def test_a_health_record_is_denied_and_the_sender_told_why(world: World) -> None:
    """Denied: terminated in RB_OUT, never in RB_IN, the sender gets Rb-Status: denied with the rule."""
    await world.start_gateway()
    edge = await world.start_edge(quarantine={"enabled": True})
    await edge.links["cloud-eu"].wait_up(10)
    local = await nats.connect(world.edge_nats.url)
    inbox = local.new_inbox()
    replies = await queue_of(local, inbox)
    js = local.jetstream()
    await js.publish(
        "rb.out.health.records.upload", b'{"patient":"Jane Doe"}', headers={"Rb-Reply-To": inbox}
    )
    notice = await asyncio.wait_for(replies.get(), 20)
    headers = notice.headers or {}
    assert (headers["Rb-Status"], headers["Rb-Reason"], headers["Rb-Rule"]) == (
        "denied",
        "rule:health-data-stays-home",
        "health-data-stays-home",
    )
    assert notice.data == b""
    quarantined = await js.get_msg("RB_QUARANTINE", 1)
    assert quarantined.subject == "rb.quarantine.health.records.upload"
    await settled(world, 0)  # terminated: nothing pending or unacked in RB_OUT
    cloud = await nats.connect(world.cloud_nats.url)
    assert (await cloud.jetstream().stream_info("RB_IN")).state.messages == 0
    await cloud.close()
    await local.close()


async def test_cloud_initiated_requests_reach_only_what_an_inbound_rule_allows(
    world: World,
) -> None:
    """rb.reply.<site> with Rb-To: delivered to an allowed local subject, refused and audited otherwise."""
    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    local = await nats.connect(world.edge_nats.url)
    received: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(message: Msg) -> None:
        if not message.subject.startswith(("$JS.", "_INBOX.")):  # the bridge's own traffic
            await received.put(message)

    await local.subscribe(">", cb=collect)
    cloud = await nats.connect(world.cloud_nats.url)
    cloud_js = cloud.jetstream()
    for number, target in enumerate(
        ("claims.fraud.check", "rb.out.docs.parse", "claims.updates.CLM-2026-1")
    ):
        await cloud_js.publish(
            "rb.reply.plant-a",
            orjson.dumps({"claim_id": "CLM-2026-1", "status": "approved"}),
            headers={"Rb-To": target, "Nats-Msg-Id": f"push-{number}", "Rb-Site": "forged"},
        )
    delivered = await asyncio.wait_for(received.get(), 20)
    assert delivered.subject == "claims.updates.CLM-2026-1"
    assert orjson.loads(delivered.data)["status"] == "approved"
    headers = delivered.headers or {}
    assert (headers["Rb-Site"], headers["Rb-Rule"]) == ("plant-a", "cloud-may-post-claim-updates")
    # The two refused ones are settled at the cloud (terminated), audited at the edge, and never
    # reached the local bus; the bridge's own stream got nothing from the cloud.
    for _ in range(100):
        info = await cloud_js.consumer_info("RB_REPLY", "reply-plant-a")
        if info.num_ack_pending == 0 and info.num_pending == 0:
            break
        await asyncio.sleep(0.1)
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    await asyncio.sleep(0.3)
    assert received.empty()
    assert (await local.jetstream().stream_info("RB_OUT")).state.messages == 0
    records = audit_records(world)
    outcomes = sorted((r["subject"], r["decision"], r["reason"]) for r in records)
    assert outcomes == [
        ("claims.fraud.check", "refused", "inbound-not-allowed"),
        ("claims.updates.CLM-2026-1", "delivered", "request"),
        ("rb.out.docs.parse", "refused", "inbound-not-allowed"),
    ]
    await cloud.close()
    await local.close()
