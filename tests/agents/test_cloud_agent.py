"""The cloud agent SDK against a real nats-server with the gateway's streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from bridge.contract import STREAM_IN, STREAM_REPLY
from bridge.natsserver import NatsServer
from bridge.runtime.streams import StreamSpec, ensure_stream
from cloud_agent import CloudAgent, CloudRequest, Digest, Token, tokens_in

DOCUMENT = {
    "claim_id": "CLM-1",
    "claimant": {"name": "tok:v1:abcdefghijklmnop"},
    "policy_number": "hmac:v2:ponmlkjihgfedcba",
    "notes": "tok:v1:x is mentioned in free text, not a token on its own",
}


@pytest.fixture
async def cloud_bus(nats_server: NatsServer) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_server.url)
    js = connection.jetstream()
    await ensure_stream(js, StreamSpec(STREAM_IN, ["rb.in.>"]))
    await ensure_stream(js, StreamSpec(STREAM_REPLY, ["rb.reply.>"]))
    yield connection
    await connection.close()


async def deliver(bus: Client, msg_id: str, *, stream_id: str | None = None) -> None:
    """What the gateway stores: the redacted payload with its own headers."""
    await bus.jetstream().publish(
        "rb.in.docs.parse",
        orjson.dumps(DOCUMENT),
        headers={
            "Nats-Msg-Id": stream_id or msg_id,
            "Rb-Msg-Id": msg_id,
            "Rb-Site": "plant-a",
            "Rb-Reply": f"sealed-{msg_id}",
            "Rb-Class": "confidential",
            "Rb-Rule": "claim-documents-to-eu-parser",
            "Rb-Policy": "7",
        },
    )


async def replies(bus: Client, count: int) -> list[Msg]:
    subscription = await bus.jetstream().pull_subscribe("rb.reply.plant-a", durable="test")
    found: list[Msg] = []
    for _ in range(50):
        with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
            found.extend(await subscription.fetch(count - len(found), timeout=0.2))
        if len(found) >= count:
            break
    return found


async def test_requests_arrive_with_pseudonyms_marked_and_replies_carry_the_token(
    nats_server: NatsServer, cloud_bus: Client
) -> None:
    agent = CloudAgent("parser", nats_url=nats_server.url)
    seen: list[CloudRequest] = []

    @agent.capability("docs.parse")
    async def parse(request: CloudRequest) -> dict[str, Any]:
        seen.append(request)
        return {"claimant": request.payload["claimant"], "pages": 2}

    async with agent:
        await deliver(cloud_bus, "plant-a/claim-1")
        (reply,) = await replies(cloud_bus, 1)
    (request,) = seen
    assert (request.site, request.msg_id, request.rule, request.policy_revision) == (
        "plant-a",
        "plant-a/claim-1",
        "claim-documents-to-eu-parser",
        "7",
    )
    assert isinstance(request.payload["claimant"]["name"], Token)
    assert isinstance(request.payload["policy_number"], Digest)
    assert not isinstance(request.payload["notes"], Token)
    assert tokens_in(request.payload) == [("$.claimant.name", "tok:v1:abcdefghijklmnop")]
    assert orjson.loads(reply.data) == {
        "claimant": {"name": "tok:v1:abcdefghijklmnop"},
        "pages": 2,
    }
    headers = reply.headers or {}
    assert (headers["Rb-Reply"], headers["Rb-Capability"], headers["Nats-Msg-Id"]) == (
        "sealed-plant-a/claim-1",
        "docs.parse",
        "reply/plant-a/claim-1",
    )


async def test_a_second_delivery_of_an_answered_message_does_no_work(
    nats_server: NatsServer, cloud_bus: Client
) -> None:
    """Idempotent by message id, across replicas: the same Rb-Msg-Id is worked on once."""
    calls: list[str] = []

    def replica() -> CloudAgent:
        agent = CloudAgent("parser", nats_url=nats_server.url)

        @agent.capability("docs.parse")
        async def parse(request: CloudRequest) -> dict[str, Any]:
            calls.append(request.msg_id)
            return {"ok": True}

        return agent

    first, second = replica(), replica()
    async with first, second:
        await deliver(cloud_bus, "plant-a/claim-1")
        await replies(cloud_bus, 1)
        # Stored again under another stream id (as after a gateway's duplicate window expired).
        await deliver(cloud_bus, "plant-a/claim-1", stream_id="again")
        await deliver(cloud_bus, "plant-a/claim-2")
        for _ in range(50):
            if first.stats.duplicates + second.stats.duplicates == 1 and len(calls) == 2:
                break
            await asyncio.sleep(0.1)
    assert sorted(calls) == ["plant-a/claim-1", "plant-a/claim-2"]
    assert first.stats.duplicates + second.stats.duplicates == 1
    info = await cloud_bus.jetstream().consumer_info(STREAM_IN, "parser-docs_parse")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


async def test_a_failing_capability_is_dead_lettered_and_the_site_told(
    nats_server: NatsServer, cloud_bus: Client
) -> None:
    agent = CloudAgent("parser", nats_url=nats_server.url, max_attempts=2, retry_delay=0.05)
    attempts: list[int] = []

    @agent.capability("docs.parse")
    async def parse(request: CloudRequest) -> dict[str, Any]:
        attempts.append(request.attempt)
        raise KeyError("fields")

    dead: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(message: Msg) -> None:
        await dead.put(message)

    await cloud_bus.subscribe("rb.agents.dead.parser", cb=collect)
    async with agent:
        await deliver(cloud_bus, "plant-a/claim-9")
        letter = await asyncio.wait_for(dead.get(), 10)
        (reply,) = await replies(cloud_bus, 1)
    assert attempts == [1, 2]
    assert (letter.headers or {})["Agent-Error"] == "KeyError: 'fields'"
    assert (reply.headers or {})["Agent-Error"] == "KeyError: 'fields'"
    assert reply.data == b"{}"
    assert agent.stats.dead_lettered == 1
