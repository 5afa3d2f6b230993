"""A sender or a cloud agent trying to steer the bridge, on real NATS servers and a real link."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from bridge.errors import BundleError
from bridge.keys.signing import generate_signing_keys, load_private_key
from bridge.policy import sign_bundle
from tests.conftest import POLICIES
from tests.runtime.helpers import audit_records, wait_stored
from tests.runtime.world import World, queue_of

CLAIM = {"claim_id": "CLM-1", "claimant": {"name": "Jane Doe", "ssn": "123-45-6789"}}


async def wait_for_records(world: World, count: int) -> list[dict[str, Any]]:
    for _ in range(600):
        path = world.root / "audit" / "audit.jsonl"
        if path.exists() and len(records := audit_records(world)) >= count:
            return records
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} audit records")


async def test_a_lower_case_classification_header_is_obeyed(world: World) -> None:
    """'rb-class: restricted' keeps a claim home; two spellings that disagree deny it."""
    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    local = await nats.connect(world.edge_nats.url)
    js = local.jetstream()
    await js.publish("rb.out.docs.parse", orjson.dumps(CLAIM), headers={"rb-class": "restricted"})
    await js.publish(
        "rb.out.docs.parse",
        orjson.dumps(CLAIM),
        headers={"Rb-Class": "confidential", "RB-CLASS": "restricted"},
    )
    records = await wait_for_records(world, 2)
    assert [(r["decision"], r["reason"]) for r in records] == [
        ("deny", "rule:restricted-never-leaves"),
        ("deny", "bad-header"),
    ]
    cloud = await nats.connect(world.cloud_nats.url)
    assert (await cloud.jetstream().stream_info("RB_IN")).state.messages == 0
    await cloud.close()
    await local.close()


async def test_a_reply_subject_in_another_spelling_is_honoured(world: World) -> None:
    """'rb-reply-to' is Rb-Reply-To: a denied message's sender still hears why."""
    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    local = await nats.connect(world.edge_nats.url)
    inbox = local.new_inbox()
    notices = await queue_of(local, inbox)
    await local.jetstream().publish(
        "rb.out.health.records.upload", b'{"patient": "x"}', headers={"RB-REPLY-TO": inbox}
    )
    notice = await asyncio.wait_for(notices.get(), 20)
    assert (notice.headers or {})["Rb-Rule"] == "health-data-stays-home"
    await local.close()


@pytest.mark.parametrize(
    "reply_to",
    [
        "$JS.API.STREAM.PURGE.VICTIM",
        "$JS.API.STREAM.DELETE.VICTIM",
        "$KV.rb_agents.x",
        "$SYS.REQ.SERVER.PING",
        "rb.out.docs.parse",
        "claims.intake",
    ],
)
async def test_the_bridge_never_publishes_where_an_agent_points_it(
    world: World, reply_to: str
) -> None:
    """A denied and an allowed message naming a NATS API subject, the bridge's own subjects or an
    unlisted agent subject as Rb-Reply-To: both are still decided (the allowed one reaches the
    cloud), nothing is published there, a victim stream keeps its message, and the audit says
    why there was no reply route."""
    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    local = await nats.connect(world.edge_nats.url)
    js = local.jetstream()
    await js.add_stream(StreamConfig(name="VICTIM", subjects=["victim.>"]))
    await js.publish("victim.one", b"keep me")
    watched = await queue_of(local, reply_to)
    await js.publish(
        "rb.out.health.records.upload", b'{"patient": "x"}', headers={"Rb-Reply-To": reply_to}
    )
    await js.publish(
        "rb.out.docs.parse",
        orjson.dumps(CLAIM),
        headers={"Rb-Class": "confidential", "Rb-Reply-To": reply_to},
    )
    records = await wait_for_records(world, 2)
    expected = (
        "reply-subject-not-allowed" if reply_to == "claims.intake" else "reply-subject-reserved"
    )
    assert [(r["decision"], r.get("reply")) for r in records] == [
        ("deny", expected),
        ("allow", expected),
    ]
    await wait_stored(world, 1, timeout=30)
    cloud = await nats.connect(world.cloud_nats.url)
    cloud_js = cloud.jetstream()
    stored = await cloud_js.get_msg("RB_IN", 1)
    assert "Rb-Reply" not in (stored.headers or {})  # no reply route was sealed
    await cloud.close()
    await asyncio.sleep(0.3)
    while not watched.empty():  # the test's own publish, if it watches rb.out; nothing else
        assert "Rb-Status" not in ((await watched.get()).headers or {})
    assert (await js.stream_info("VICTIM")).state.messages == 1
    # RB_OUT took the two messages of this test and nothing from the bridge (its delivered
    # messages are removed, so count by sequence).
    assert (await js.stream_info("RB_OUT")).state.last_seq == 2
    await local.close()


async def replies_with_one_token(world: World, count: int, tag: str) -> None:
    """A cloud agent that answers the stored claim ``count`` times with its one token."""
    cloud = await nats.connect(world.cloud_nats.url)
    cloud_js = cloud.jetstream()
    stored = await cloud_js.get_msg("RB_IN", 1)
    headers = stored.headers or {}
    for number in range(count):
        await cloud_js.publish(
            "rb.reply.plant-a",
            orjson.dumps({"answer": f"{tag}-{number}"}),
            headers={
                "Rb-Reply": headers["Rb-Reply"],
                "Rb-Capability": "docs.parse",
                "Nats-Msg-Id": f"{tag}-{number}",
            },
        )
    await cloud.close()


async def reply_pump_settled(world: World) -> None:
    cloud = await nats.connect(world.cloud_nats.url)
    cloud_js = cloud.jetstream()
    for _ in range(600):
        info = await cloud_js.consumer_info("RB_REPLY", "reply-plant-a")
        if info.num_ack_pending == 0 and info.num_pending == 0:
            break
        await asyncio.sleep(0.05)
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    await cloud.close()


async def test_a_reply_token_is_good_for_one_reply_even_across_a_restart(world: World) -> None:
    """Three replies with one token: the first reaches the agent, the others are refused
    (token-spent, audited, settled in the cloud); after the edge bridge restarts, a fourth is
    refused too."""
    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    local = await nats.connect(world.edge_nats.url)
    inbox = local.new_inbox()
    answers: asyncio.Queue[Msg] = await queue_of(local, inbox)
    await local.jetstream().publish(
        "rb.out.docs.parse",
        orjson.dumps(CLAIM),
        headers={"Rb-Class": "confidential", "Rb-Reply-To": inbox},
    )
    await wait_stored(world, 1, timeout=30)

    await replies_with_one_token(world, 3, "first")
    first = await asyncio.wait_for(answers.get(), 20)
    # One of the three, whichever the edge recorded first (batches may be handled concurrently).
    assert orjson.loads(first.data)["answer"] in {"first-0", "first-1", "first-2"}
    await reply_pump_settled(world)
    await asyncio.sleep(0.3)
    assert answers.empty()

    await world.edges.pop().stop()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    await replies_with_one_token(world, 1, "after-restart")
    await reply_pump_settled(world)
    await asyncio.sleep(0.3)
    assert answers.empty()
    inbound = [r for r in audit_records(world) if r["direction"] == "inbound"]
    assert sorted((r["decision"], r["reason"]) for r in inbound) == [
        ("delivered", "reply"),
        ("refused", "token-spent"),
        ("refused", "token-spent"),
        ("refused", "token-spent"),
    ]
    await local.close()


def signed(path: Path, key: Any, revision: int, policy: str = "claims") -> Path:
    text = (POLICIES / "claims.yaml").read_text().replace("name: claims", f"name: {policy}", 1)
    path.write_bytes(sign_bundle({"claims.yaml": text.encode()}, revision, key))
    return path


async def test_an_edge_restarted_on_an_older_or_foreign_bundle_never_runs_it(
    world: World,
) -> None:
    """Revision 8 ran; after a restart, revision 7 (an older signed bundle) is refused, and so is
    a signed bundle of another policy; the reasons name both revisions or both policies."""
    await world.start_gateway()
    private, public = generate_signing_keys(world.root / "signing")
    key = load_private_key(private)
    path = signed(world.root / "policy" / "claims.bundle", key, 8)
    policy = {"path": path, "pubkey": public, "require_signature": True, "watch_seconds": 0.2}
    edge = await world.start_edge(policy=policy)
    assert edge.policy.current is not None
    assert edge.policy.current.revision == 8
    await world.edges.pop().stop()

    # Refused on disk at start: the last good copy (revision 8) runs instead, and /readyz and
    # the status line say so; without that copy the start fails.
    signed(path, key, 7)
    edge = await world.start_edge(policy=policy)
    assert edge.policy.current is not None
    assert edge.policy.current.revision == 8
    assert "revision 7 of policy 'claims' is lower than revision 8" in edge.notes()[0]
    assert "last good" in edge.describe_policy()
    await world.edges.pop().stop()
    signed(path, key, 9, policy="claims-lab")
    edge = await world.start_edge(policy=policy)
    assert edge.policy.engine.name == "claims"
    assert "this edge runs 'claims'" in edge.notes()[0]
    await world.edges.pop().stop()
    (world.root / "last-good-policy.bundle").unlink()
    with pytest.raises(BundleError, match=r"this edge runs 'claims'"):
        await world.start_edge(policy=policy)
    signed(path, key, 9)
    edge = await world.start_edge(policy=policy)
    assert edge.policy.current is not None
    assert edge.policy.current.revision == 9


async def publish_raw(
    url: str, subject: str | bytes, header_lines: list[str], payload: bytes
) -> None:
    """Publish as a client that checks neither header names nor the subject's encoding (not
    every NATS client does, and the server stores what it is given)."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    await reader.readline()  # INFO
    block = ("NATS/1.0\r\n" + "".join(f"{line}\r\n" for line in header_lines) + "\r\n").encode()
    raw_subject = subject if isinstance(subject, bytes) else subject.encode()
    writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n')
    writer.write(b"HPUB %b %d %d\r\n%b%b\r\nPING\r\n" % (
        raw_subject, len(block), len(block) + len(payload), block, payload
    ))  # fmt: skip
    await writer.drain()
    assert (await reader.readline()).startswith(b"PONG")
    writer.close()
    await writer.wait_closed()


async def raw_then_plain(
    world: World, subject: str | bytes, header_lines: list[str]
) -> list[dict[str, Any]]:
    """A linked edge takes a claim from a raw-protocol client, then an ordinary one: the two
    audit records, once the ordinary claim is stored and both were settled (none is left in
    RB_OUT to come back)."""
    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    await publish_raw(world.edge_nats.url, subject, header_lines, orjson.dumps(CLAIM))
    local = await nats.connect(world.edge_nats.url)
    try:
        await local.jetstream().publish(
            "rb.out.docs.parse", orjson.dumps(CLAIM), headers={"Rb-Class": "confidential"}
        )
        records = await wait_for_records(world, 2)
        await wait_stored(world, 1)
        async with asyncio.timeout(30):
            while (await local.jetstream().consumer_info("RB_OUT", "rbridge-edge")).num_ack_pending:
                await asyncio.sleep(0.05)
    finally:
        await local.close()
    return records


async def test_a_header_name_nats_py_could_not_publish_on_is_denied_and_the_next_message_leaves(
    world: World,
) -> None:
    """A name outside RFC 7230's token characters, from a client that allows it: denied at the
    edge as a bad header (the gateway could not store it), and the stream goes on."""
    records = await raw_then_plain(
        world, "rb.out.docs.parse", ["Rb-Class: confidential", "X(note): v"]
    )
    assert [(r["decision"], r["reason"]) for r in records] == [
        ("deny", "bad-header"),
        ("allow", "rule:claim-documents-to-eu-parser"),
    ]


@pytest.mark.parametrize(
    "subject", [b"rb.out.docs.\xff\xfe", b"rb.out.\xc3(", b"rb.out.docs.parse\xed\xa0\x80"]
)
async def test_a_subject_that_is_not_utf8_is_denied_and_the_edge_goes_on(
    world: World, subject: bytes
) -> None:
    """The server stores a subject of any bytes. Reading one (nats-py decodes it as UTF-8)
    stopped the edge's connection reader for good, and the message came back after every
    restart: one message stopped the site. It is denied as a bad subject, and the next leaves."""
    records = await raw_then_plain(world, subject, ["Rb-Class: confidential"])
    assert [(r["decision"], r["reason"]) for r in records] == [
        ("deny", "bad-subject"),
        ("allow", "rule:claim-documents-to-eu-parser"),
    ]
    assert "\ufffd" in records[0]["subject"]  # what could not be read, shown as such
