"""Nothing kept longer than needed, nothing waiting lost: retention and bounds on real NATS."""

from __future__ import annotations

import asyncio
import random

import nats
import orjson
import pytest
from nats.js import api

from bridge.runtime.streams import StreamConfigError
from edge_agent import Agent, Denied, Unavailable
from edge_agent.examples.samples import claim
from tests.eventually import eventually
from tests.runtime.helpers import audit_records
from tests.runtime.world import World

STREAMS = (("edge", "RB_OUT"), ("cloud", "RB_IN"), ("cloud", "RB_REPLY"))


async def stream_state(world: World, side: str, name: str) -> api.StreamState:
    server = world.edge_nats if side == "edge" else world.cloud_nats
    connection = await nats.connect(server.url)
    try:
        return (await connection.jetstream().stream_info(name)).state
    finally:
        await connection.close()


async def consumer_names(world: World, name: str) -> list[str]:
    connection = await nats.connect(world.cloud_nats.url)
    try:
        return [c.name for c in await connection.jetstream().consumers_info(name)]
    finally:
        await connection.close()


async def all_empty(world: World) -> bool:
    for side, name in STREAMS:
        if (await stream_state(world, side, name)).messages:
            return False
    return True


async def test_what_is_delivered_is_stored_nowhere_and_a_resend_is_still_a_duplicate(
    world: World,
) -> None:
    """After requests are forwarded, answered and acked, RB_OUT, RB_IN and RB_REPLY hold none
    of them; every request reached the cloud agent once; and a resend with a delivered
    message's id, after the message itself was removed, is still recognised as a duplicate on
    both sides (JetStream keeps ids for the duplicate window apart from the messages)."""
    await world.start_linked()
    seen: list[str] = []
    cloud = world.parser(seen)
    await cloud.start()
    rng = random.Random(14)
    claims = [claim(number, rng) for number in range(40)]
    try:
        async with Agent("desk", nats_url=world.edge_nats.url) as desk:
            answers = await asyncio.gather(
                *(
                    desk.ask_cloud("docs.parse", document, msg_id=f"r-{n}", timeout=60)
                    for n, document in enumerate(claims)
                )
            )
        assert [a["claim_id"] for a in answers] == [c["claim_id"] for c in claims]
        await eventually(lambda: all_empty(world), "the three streams emptied")
        assert sorted(seen) == sorted(f"plant-a/r-{n}" for n in range(40))
        assert (await stream_state(world, "cloud", "RB_IN")).last_seq == 40

        # The same ids again, after the messages are gone: duplicates, not new messages.
        edge_client = await nats.connect(world.edge_nats.url)
        cloud_client = await nats.connect(world.cloud_nats.url)
        try:
            again = await edge_client.jetstream().publish(
                "rb.out.docs.parse",
                orjson.dumps(claims[0]),
                headers={"Nats-Msg-Id": "r-0", "Rb-Class": "confidential"},
            )
            stored = await cloud_client.jetstream().publish(
                "rb.in.docs.parse", b"{}", headers={"Nats-Msg-Id": "plant-a/r-1"}
            )
        finally:
            await edge_client.close()
            await cloud_client.close()
        assert again.duplicate
        assert stored.duplicate
        await asyncio.sleep(1.0)  # what a wrongly accepted resend would need to arrive
        assert len(seen) == 40
        assert await all_empty(world)
    finally:
        await cloud.stop()


@pytest.mark.slow
async def test_requests_for_a_capability_nobody_consumes_yet_wait_for_its_first_consumer(
    world: World,
) -> None:
    """Interest retention drops what no consumer wants: the gateway holds a capability that has
    no cloud agent yet, the requests wait, the first agent gets them all, then the hold goes."""
    gateway, _ = await world.start_linked()
    rng = random.Random(15)
    async with Agent("desk", nats_url=world.edge_nats.url) as desk:
        for n in range(12):
            await desk.send_cloud("docs.parse", claim(n, rng), msg_id=f"w-{n}")

    async def stored_all() -> bool:
        return (await stream_state(world, "cloud", "RB_IN")).last_seq == 12

    await eventually(stored_all, "the requests stored in RB_IN")
    await gateway.holds.tidy()  # nothing consumes docs.parse: the hold stays
    assert (await stream_state(world, "cloud", "RB_IN")).messages == 12
    assert [n for n in await consumer_names(world, "RB_IN") if n.startswith("hold-")]

    seen: list[str] = []
    cloud = world.parser(seen)
    await cloud.start()
    try:

        async def all_handled() -> bool:
            return len(seen) >= 12

        await eventually(all_handled, "the held requests delivered to the first agent")

        async def released() -> bool:
            names = await consumer_names(world, "RB_IN")
            held = (await stream_state(world, "cloud", "RB_IN")).messages
            return names == ["parser-docs_parse"] and held == 0

        await eventually(released, "the hold released and RB_IN emptied")
        assert sorted(seen) == sorted(f"plant-a/w-{n}" for n in range(12))
    finally:
        await cloud.stop()


@pytest.mark.slow
async def test_a_full_stream_refuses_new_messages_loses_none_and_the_flow_resumes(
    world: World,
) -> None:
    """RB_IN at its bound: the gateway refuses with a retriable code and the edge holds the rest
    back in RB_OUT; /readyz and the metrics say why; once an agent drains RB_IN every request
    arrives, once each. RB_OUT at its bound: the agent SDK raises Unavailable naming it, and
    what RB_OUT had already stored is all delivered."""
    gateway = await world.start_gateway(streams={"inbound": {"max_bytes": 8192}})
    edge = await world.start_edge(streams={"outbound": {"max_bytes": 32768}})
    await edge.links["cloud-eu"].wait_up(20)
    rng = random.Random(16)
    sent: list[str] = []
    refused: Unavailable | None = None
    async with Agent("desk", nats_url=world.edge_nats.url) as desk:
        for n in range(200):
            try:
                await desk.send_cloud("docs.parse", claim(n, rng), msg_id=f"f-{n}")
            except Unavailable as error:
                refused = error
                break
            sent.append(f"plant-a/f-{n}")
    assert refused is not None, "RB_OUT never refused a message"
    assert "outbound store is full" in str(refused)
    assert 8 < len(sent) < 200
    await edge.streams.check()  # RB_OUT is at its bound: RB_IN is, so the edge holds back
    assert any(note.startswith("stream RB_OUT holds") for note in edge.notes()), edge.notes()

    async def cloud_full() -> bool:
        await gateway.watch.check()
        return bool(gateway.watch.notes())

    await eventually(cloud_full, "RB_IN reported nearly full")
    note = gateway.watch.notes()[0]
    assert note.startswith("stream RB_IN holds"), note
    assert "new messages are refused" in note
    registry = gateway.metrics.registry
    fill = registry.get_sample_value("rbridge_stream_fill_ratio", {"stream": "RB_IN"})
    assert fill is not None
    assert fill >= 0.9
    stored = (await stream_state(world, "cloud", "RB_IN")).messages
    waiting = (await stream_state(world, "edge", "RB_OUT")).messages
    assert stored + waiting == len(sent)  # nothing waiting was dropped on either side
    assert waiting > 0

    seen: list[str] = []
    cloud = world.parser(seen)
    await cloud.start()
    try:

        async def all_handled() -> bool:
            return len(seen) >= len(sent)

        await eventually(all_handled, "every stored request delivered", timeout=120)
        await eventually(lambda: all_empty(world), "the streams emptied")
        assert sorted(seen) == sorted(sent)
        await gateway.watch.check()
        assert gateway.watch.notes() == []
    finally:
        await cloud.stop()


@pytest.mark.slow
async def test_streams_of_the_previous_version_are_converted_and_nothing_waiting_is_lost(
    world: World,
) -> None:
    """Streams as the previous version made them (limits retention, unbounded) with messages
    waiting on both sides: claims in RB_OUT not yet taken, requests in RB_IN for a capability
    no agent consumes yet. The new edge and gateway convert them in place and deliver all."""
    rng = random.Random(17)
    edge_client = await nats.connect(world.edge_nats.url)
    cloud_client = await nats.connect(world.cloud_nats.url)
    try:
        edge_js, cloud_js = edge_client.jetstream(), cloud_client.jetstream()
        await edge_js.add_stream(
            api.StreamConfig(name="RB_OUT", subjects=["rb.out.>"], storage=api.StorageType.FILE)
        )
        await edge_js.add_consumer(
            "RB_OUT",
            config=api.ConsumerConfig(
                durable_name="rbridge-edge",
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=60,
                filter_subject="rb.out.>",
            ),
        )
        for n in range(6):
            await edge_js.publish(
                "rb.out.docs.parse",
                orjson.dumps(claim(n, rng)),
                headers={"Nats-Msg-Id": f"o-{n}", "Rb-Class": "confidential"},
            )
        for name, subjects in (("RB_IN", ["rb.in.>"]), ("RB_REPLY", ["rb.reply.>"])):
            await cloud_js.add_stream(
                api.StreamConfig(name=name, subjects=subjects, storage=api.StorageType.FILE)
            )
        for n in range(4):
            await cloud_js.publish(
                "rb.in.docs.parse",
                orjson.dumps({"claim_id": f"old-{n}"}),
                headers={"Nats-Msg-Id": f"plant-a/old-{n}", "Rb-Site": "plant-a"},
            )
    finally:
        await edge_client.close()
        await cloud_client.close()

    await world.start_linked()

    async def forwarded() -> bool:
        return (await stream_state(world, "cloud", "RB_IN")).last_seq == 10

    await eventually(forwarded, "the waiting claims forwarded")
    assert (await stream_state(world, "cloud", "RB_IN")).messages == 10  # the old four held
    seen: list[str] = []
    cloud = world.parser(seen)
    await cloud.start()
    try:

        async def all_handled() -> bool:
            return len(seen) >= 10

        await eventually(all_handled, "every waiting request delivered")
        await eventually(lambda: all_empty(world), "the streams emptied")
        assert sorted(seen) == sorted(
            [f"plant-a/o-{n}" for n in range(6)] + [f"plant-a/old-{n}" for n in range(4)]
        )
    finally:
        await cloud.stop()
    client = await nats.connect(world.cloud_nats.url)
    try:
        for name in ("RB_IN", "RB_REPLY"):
            info = await client.jetstream().stream_info(name)
            assert info.config.retention == api.RetentionPolicy.INTEREST
            assert info.config.max_bytes == 1 << 30
    finally:
        await client.close()


async def test_a_stream_jetstream_cannot_convert_is_named_with_what_to_do(
    world: World,
) -> None:
    """A work-queue RB_OUT (made by hand) cannot become an interest stream in place: the edge
    refuses to start, naming the stream, the change and where the guide explains it."""
    client = await nats.connect(world.edge_nats.url)
    try:
        await client.jetstream().add_stream(
            api.StreamConfig(
                name="RB_OUT", subjects=["rb.out.>"], retention=api.RetentionPolicy.WORK_QUEUE
            )
        )
    finally:
        await client.close()
    await world.start_gateway()
    with pytest.raises(StreamConfigError) as refused:
        await world.start_edge()
    text = str(refused.value)
    assert text.startswith("stream RB_OUT exists with a configuration that cannot be changed")
    assert "retention workqueue -> interest" in text
    assert "'Retention'" in text


def test_stream_bounds_that_make_no_sense_are_refused(world: World) -> None:
    from bridge.runtime.config import ConfigError

    for bad in ({"max_bytes": -2}, {"max_age_seconds": -1}, {"max_bytes": "lots"}, {"size": 1}):
        path = world.root / "bad.yaml"
        settings = world.edge_settings(destinations={"cloud-eu": {"address": "localhost:1"}})
        data = orjson.loads(settings.model_dump_json(exclude_none=True))
        data["streams"] = {"outbound": bad}
        path.write_text(orjson.dumps(data).decode())
        with pytest.raises(ConfigError) as error:
            type(settings).load(path)
        assert "streams.outbound" in str(error.value), error.value


async def test_a_message_jetstream_refuses_for_good_is_quarantined_once_not_retried(
    world: World,
) -> None:
    """RB_IN refuses a message outright (here: larger than its max_msg_size): the gateway says
    so with a final code, and the edge audits it once, quarantines it with the reason and tells
    the sender, instead of deciding it again on every redelivery."""
    client = await nats.connect(world.cloud_nats.url)
    try:
        await client.jetstream().add_stream(
            api.StreamConfig(
                name="RB_IN", subjects=["rb.in.>"], storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.INTEREST, discard=api.DiscardPolicy.NEW,
                max_bytes=1 << 30, duplicate_window=86_400, max_msg_size=256,
            )
        )  # fmt: skip
    finally:
        await client.close()
    await world.start_gateway()
    edge = await world.start_edge(quarantine={"enabled": True})
    await edge.links["cloud-eu"].wait_up(20)
    async with Agent("desk", nats_url=world.edge_nats.url) as desk:
        with pytest.raises(Denied) as denied:
            await desk.ask_cloud(
                "docs.parse", claim(1, random.Random(18)), msg_id="big", timeout=30
            )
    assert denied.value.reason == "cloud:store-refused"
    assert "message size exceeds maximum allowed" in denied.value.detail
    records = audit_records(world)
    about = [r for r in records if r.get("msg_id") == "plant-a/big"]
    assert [(r["decision"], r["reason"]) for r in about] == [
        ("allow", "rule:claim-documents-to-eu-parser"),
        ("refused-by-cloud", "cloud:store-refused"),
    ]
    edge_client = await nats.connect(world.edge_nats.url)
    try:
        js = edge_client.jetstream()

        async def quarantined() -> bool:
            return (await js.stream_info("RB_QUARANTINE")).state.messages == 1

        await eventually(quarantined, "the refused message quarantined")
        kept = await js.get_msg("RB_QUARANTINE", 1)
        assert (kept.headers or {})["Rb-Reason"] == "cloud:store-refused"
        assert (await js.stream_info("RB_OUT")).state.messages == 0
    finally:
        await edge_client.close()


async def test_a_bound_larger_than_the_store_can_reserve_is_refused_by_name(world: World) -> None:
    """JetStream reserves each stream's max_bytes on its store: a bound the disk cannot hold
    (here a petabyte) stops the start with the stream named and what to do."""
    await world.start_gateway()
    with pytest.raises(StreamConfigError) as refused:
        await world.start_edge(streams={"outbound": {"max_bytes": 10**15}})
    text = str(refused.value)
    assert text.startswith("stream RB_OUT cannot be created: insufficient storage resources")
    assert "lower the stream's max_bytes" in text
