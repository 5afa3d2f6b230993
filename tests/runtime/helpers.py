"""Helpers the runtime tests share: settings, reading streams and audit trails, waiting."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
import orjson
import pytest
from nats.js.api import RawStreamMsg

from bridge.audit.records import kind_of
from bridge.cloud.config import CloudSettings
from tests.conftest import ROOT
from tests.link.helpers import TRUST_DOMAIN, Pki

if TYPE_CHECKING:
    from tests.runtime.world import World


def cloud_settings(pki: Pki, nats_url: str, **overrides: object) -> CloudSettings:
    data: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "http": "127.0.0.1:0",
        "trust_domain": TRUST_DOMAIN,
        "tls": {
            "cert": pki.root / "gateway.pem",
            "key": pki.root / "gateway.key",
            "ca": pki.ca_path,
        },
        "crl": pki.crl_path,
        "sites": {"plant-a": {"capabilities": ["docs.>", "hr.jobs.publish"]}},
        "nats": {"url": nats_url},
        "min_policy_revision": 5,
        "leak_guard": {"permit": {"hr.jobs.publish": ["email"]}},
        "grace_seconds": 1,
    }
    data.update(overrides)
    return CloudSettings(**data)  # type: ignore[arg-type]


async def http_get(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data.split(b"\r\n\r\n", 1)[1].decode()


async def stream_messages(url: str, stream: str) -> list[RawStreamMsg]:
    connection = await nats.connect(url)
    js = connection.jetstream()
    info = await js.stream_info(stream)
    messages = []
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        messages.append(await js.get_msg(stream, sequence))
    await connection.close()
    return messages


async def settled(world: World, expected_in: int, timeout: float = 30) -> None:
    """Wait until RB_OUT has nothing pending or unacked and RB_IN holds ``expected_in``."""
    edge = await nats.connect(world.edge_nats.url)
    cloud = await nats.connect(world.cloud_nats.url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                info = await edge.jetstream().consumer_info("RB_OUT", "rbridge-edge")
                stored = (await cloud.jetstream().stream_info("RB_IN")).state.messages
                if info.num_pending == 0 and info.num_ack_pending == 0 and stored >= expected_in:
                    return
                await asyncio.sleep(0.1)
    finally:
        await edge.close()
        await cloud.close()


async def publish(world: World, first: int, last: int) -> None:
    connection = await nats.connect(world.edge_nats.url)
    js = connection.jetstream()
    for number in range(first, last):
        await js.publish(
            "rb.out.docs.parse",
            orjson.dumps({"claim_id": f"F-{number}"}),
            headers={"Rb-Class": "internal", "Nats-Msg-Id": f"f-{number}"},
        )
    await connection.close()


async def stored_count(world: World) -> int:
    connection = await nats.connect(world.cloud_nats.url)
    try:
        return int((await connection.jetstream().stream_info("RB_IN")).state.messages)
    except Exception:
        return 0
    finally:
        await connection.close()


async def wait_stored(world: World, at_least: int, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while await stored_count(world) < at_least:
            await asyncio.sleep(0.05)


async def assert_each_once(world: World, count: int) -> None:
    """sent == received at the cloud, no id twice in RB_IN, nothing left on-prem."""
    await settled(world, count, timeout=90)
    messages = await stream_messages(world.cloud_nats.url, "RB_IN")
    ids = [(m.headers or {})["Nats-Msg-Id"] for m in messages]
    assert len(ids) == count, f"{len(ids)} stored for {count} sent"
    assert len(set(ids)) == count, "an id was stored twice"
    assert set(ids) == {f"plant-a/f-{n}" for n in range(count)}


def spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "bridge.cli.main", *command],
            cwd=ROOT,
            stdout=handle,
            stderr=handle,
            start_new_session=True,
        )


async def wait_line(log: Path, text: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while text not in (log.read_text() if log.exists() else ""):
            await asyncio.sleep(0.05)


def read_records(directory: Path) -> list[dict[str, Any]]:
    """The records of the audit trail in ``directory``; each must be one of the record kinds."""
    records = [orjson.loads(line) for line in (directory / "audit.jsonl").read_bytes().splitlines()]
    for record in records:
        assert kind_of(record) is not None, f"an audit record of no kind: {sorted(record)}"
    return records


def audit_records(world: World, name: str = "audit") -> list[dict[str, Any]]:
    """The records of the world's audit trail ``name``."""
    return read_records(world.root / name)


async def claim_and_deny(world: World, seed: int, *, leak: bool = False) -> None:
    """Through a linked world: one claim answered by the cloud's parser and one health record
    denied by rule; with ``leak``, also a message the leak guard stops (an e-mail address)."""
    from edge_agent import Agent, Denied
    from edge_agent.examples.samples import claim, health_record

    agent = world.parser()
    await agent.start()
    rng = random.Random(seed)
    try:
        async with Agent("desk", nats_url=world.edge_nats.url) as desk:
            await desk.ask_cloud("docs.parse", claim(1, rng), timeout=30)
            with pytest.raises(Denied):
                await desk.ask_cloud("docs.medical.scan", health_record(2, rng), timeout=30)
            if leak:
                with pytest.raises(Denied):
                    await desk.ask_cloud("docs.parse", {"claim_id": "C-9", "note": "a@b.example"})
    finally:
        await agent.stop()
