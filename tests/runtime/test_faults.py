"""Faults with counts: whatever breaks, every message reaches the cloud once and none is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import nats
import orjson
import pytest
from nats.aio.msg import Msg

from bridge.up.ports import free_port
from tests.link.helpers import BlackholeProxy
from tests.runtime.helpers import (
    assert_each_once,
    cloud_settings,
    publish,
    settled,
    spawn,
    stored_count,
    stream_messages,
    wait_line,
    wait_stored,
)
from tests.runtime.world import World

COUNT = 3000
pytestmark = pytest.mark.slow


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def test_gateway_killed_mid_stream_and_restarted(world: World) -> None:
    """SIGKILL the cloud gateway process while 3000 messages flow; restart it: each arrives once."""
    port = free_port()
    settings = cloud_settings(world.pki, world.cloud_nats.url, listen=f"127.0.0.1:{port}")
    config = world.write_config("cloud", settings)
    log = world.root / "cloud.log"
    gateway = spawn(["cloud", "--config", str(config)], log)
    try:
        await wait_line(log, "rbridge cloud: link on")
        destinations = {
            "cloud-eu": {"address": f"localhost:{port}"},
            "cloud-us": {"address": f"localhost:{port}"},
        }
        edge = await world.start_edge(destinations=destinations)
        await edge.links["cloud-eu"].wait_up(10)
        sender = asyncio.create_task(publish(world, 0, COUNT))
        await wait_stored(world, 500)
        kill(gateway)
        await asyncio.sleep(1.0)
        gateway = spawn(["cloud", "--config", str(config)], log)
        await sender
        await assert_each_once(world, COUNT)
    finally:
        kill(gateway)


async def test_edge_bridge_killed_and_restarted(world: World) -> None:
    """SIGKILL the edge bridge process mid-stream; restart it: each message reaches the cloud once."""
    gateway = await world.start_gateway()
    settings = world.edge_settings(
        destinations={
            "cloud-eu": {"address": f"localhost:{gateway.port}"},
            "cloud-us": {"address": f"localhost:{gateway.port}"},
        }
    )
    config = world.write_config("edge", settings)
    log = world.root / "edge.log"
    edge = spawn(["edge", "--config", str(config)], log)
    try:
        await wait_line(log, "rbridge edge: site plant-a")
        sender = asyncio.create_task(publish(world, 0, COUNT))
        await wait_stored(world, 500)
        kill(edge)
        edge = spawn(["edge", "--config", str(config)], log)
        await sender
        await assert_each_once(world, COUNT)
    finally:
        kill(edge)


@pytest.mark.parametrize("cut", ["reset", "blackhole"])
async def test_link_cut_longer_than_keepalive(world: World, cut: str) -> None:
    """A proxy between edge and gateway resets the link, or silently drops it: nothing lost or doubled."""
    gateway = await world.start_gateway()
    proxy = await BlackholeProxy.start(gateway.port)
    edge = await world.start_edge(
        destinations={
            "cloud-eu": {"address": f"localhost:{proxy.port}"},
            "cloud-us": {"address": f"localhost:{proxy.port}"},
        }
    )
    await edge.links["cloud-eu"].wait_up(10)
    sender = asyncio.create_task(publish(world, 0, COUNT))
    await wait_stored(world, 500)
    if cut == "reset":
        proxy.close()
    else:
        proxy.blackhole = True
    async with asyncio.timeout(20):
        while edge.links["cloud-eu"].state == "up":
            await asyncio.sleep(0.05)
    await asyncio.sleep(2.5)  # longer than keepalive (1 s + 1 s here)
    proxy.close()
    replacement = await BlackholeProxy.start(gateway.port, port=proxy.port)
    await sender
    await assert_each_once(world, COUNT)
    replacement.close()


@pytest.mark.parametrize("which", ["edge", "cloud"])
async def test_a_nats_server_restarted_mid_stream(world: World, which: str) -> None:
    """The edge's or the cloud's NATS restarts while messages flow: each arrives once, none lost."""
    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    await publish(world, 0, COUNT // 2)
    await wait_stored(world, 300)
    server = world.edge_nats if which == "edge" else world.cloud_nats
    server.stop()
    await asyncio.sleep(1.0)
    server.start()
    await publish(world, COUNT // 2, COUNT)
    await assert_each_once(world, COUNT)


async def test_replies_while_the_site_is_offline_arrive_after_it_reconnects(world: World) -> None:
    """Replies published while no edge is connected wait in RB_REPLY and reach the sender later."""
    gateway = await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    local = await nats.connect(world.edge_nats.url)
    inbox = local.new_inbox()
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    async def collect(message: Msg) -> None:
        await answers.put(message.data)

    await local.subscribe(inbox, cb=collect)
    js = local.jetstream()
    for number in range(20):
        await js.publish(
            "rb.out.docs.parse",
            orjson.dumps({"claim_id": f"O-{number}", "claimant": {"name": f"Name {number}"}}),
            headers={"Rb-Class": "internal", "Rb-Reply-To": inbox, "Nats-Msg-Id": f"o-{number}"},
        )
    await settled(world, 20)
    stored = await stream_messages(world.cloud_nats.url, "RB_IN")
    # The site goes offline; the cloud agent answers anyway.
    await world.edges.pop().stop()
    cloud = await nats.connect(world.cloud_nats.url)
    for message in stored:
        document = orjson.loads(message.data or b"{}")
        headers = message.headers or {}
        await cloud.jetstream().publish(
            "rb.reply.plant-a",
            orjson.dumps({"claimant": document["claimant"], "ok": True}),
            headers={"Rb-Reply": headers["Rb-Reply"], "Rb-Capability": "docs.parse"},
        )
    await cloud.close()
    await asyncio.sleep(1.0)
    assert answers.empty()
    await world.start_edge(
        destinations={
            "cloud-eu": {"address": f"localhost:{gateway.port}"},
            "cloud-us": {"address": f"localhost:{gateway.port}"},
        }
    )
    received = [orjson.loads(await asyncio.wait_for(answers.get(), 20)) for _ in range(20)]
    assert sorted(r["claimant"]["name"] for r in received) == sorted(f"Name {n}" for n in range(20))
    await local.close()


async def test_an_unwritable_audit_trail_stops_forwarding_until_it_recovers(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full: nothing is forwarded unaudited, readiness says why; when writes work again, all flows."""
    from bridge.audit import AuditWriteError

    await world.start_gateway()
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    real_append = edge.audit.append
    full = {"on": True}

    def append(entries: object) -> None:
        if full["on"]:
            edge.audit.healthy = False
            edge.audit.last_error = "No space left on device"
            raise AuditWriteError("cannot write the audit trail: No space left on device")
        real_append(entries)  # type: ignore[arg-type]

    monkeypatch.setattr(edge.audit, "append", append)
    await publish(world, 0, 200)
    await asyncio.sleep(3)
    assert await stored_count(world) == 0, "nothing may leave unaudited"
    assert any("audit trail not writable" in reason for reason in edge.not_ready())
    full["on"] = False
    await assert_each_once(world, 200)
    assert edge.not_ready() == []
