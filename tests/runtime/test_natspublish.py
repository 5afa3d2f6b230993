"""Batches framed by the bridge, through a real nats-server: what a subscriber receives is what
nats-py's own publish delivers, on both paths (the frames handed over, and the fallback
through ``Client.publish``); bad input or a closed connection sends nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import BadHeaderError, ConnectionClosedError, MaxPayloadError

from bridge import natspublish, natsread
from bridge.natsserver import NatsServer
from bridge.runtime.publisher import StreamPublisher

HEADERS = {
    "Nats-Msg-Id": "e-1",
    "Rb-Reply-Token": "v1." + "A" * 180,
    " X-Padded ": "  inside  ",
    "X-Newline": "a\r\nb",
    "X-Unicode": "résidence €",
}


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


async def received(nc: Client, subject: str, count: int, send: Awaitable[None]) -> list[Msg]:
    got: list[Msg] = []
    arrived = asyncio.Event()

    async def keep(message: Msg) -> None:
        got.append(message)
        if len(got) == count:
            arrived.set()

    subscription = await nc.subscribe(subject, cb=keep)
    await natspublish.flush(nc)
    await send
    async with asyncio.timeout(30):
        await arrived.wait()
    await subscription.unsubscribe()
    return got


def seen(messages: list[Msg]) -> list[tuple[str, str, bytes, dict[str, str] | None]]:
    return [(m.subject, m.reply, m.data, m.headers) for m in messages]


@pytest.mark.parametrize("raw", [True, False], ids=["frames", "fallback"])
async def test_a_batch_arrives_as_nats_py_publishes_it(
    nc: Client, raw: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(natspublish, "RAW", raw)
    batch: list[natspublish.Message] = [
        ("t.one", b"payload-1", HEADERS, "_INBOX.r.1"),
        ("t.two", b"", None, ""),
        ("t.three", bytes(range(256)) * 8, {}, "_INBOX.r.3"),
        ("t.four", b"x", {"Status": "x", "A": ""}, ""),
    ]
    ours = await received(nc, "t.>", 4, natspublish.publish_many(nc, batch))

    async def theirs_sent() -> None:
        for subject, payload, headers, reply in batch:
            await nc.publish(
                subject, payload, reply=reply, headers=None if headers is None else dict(headers)
            )

    theirs = await received(nc, "t.>", 4, theirs_sent())
    assert seen(ours) == seen(theirs)
    assert ours[0].headers is not None
    assert ours[0].headers["X-Newline"] == "a  b"
    assert ours[0].headers["X-Padded"] == "inside"


@pytest.mark.parametrize("raw", [True, False], ids=["frames", "fallback"])
async def test_one_bad_message_sends_none_of_the_batch(
    nc: Client, raw: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(natspublish, "RAW", raw)
    got: list[Msg] = []

    async def keep(message: Msg) -> None:
        got.append(message)

    await nc.subscribe("t.>", cb=keep)
    batch: list[natspublish.Message] = [
        ("t.good", b"1", {"A": "b"}, ""),
        ("t.bad", b"2", {"Bad Name": "b"}, ""),
    ]
    with pytest.raises(BadHeaderError):
        await natspublish.publish_many(nc, batch)
    too_big = b"x" * (nc.max_payload + 1)
    with pytest.raises(MaxPayloadError):
        await natspublish.publish_many(
            nc, [("t.good", b"1", None, ""), ("t.big", too_big, None, "")]
        )
    await natspublish.publish_many(nc, [("t.last", b"3", None, "")])
    await natspublish.flush(nc)
    async with asyncio.timeout(30):
        while not got:
            await asyncio.sleep(0.01)
    assert [m.subject for m in got] == ["t.last"]


async def test_a_closed_connection_refuses_the_batch(nats_server: NatsServer) -> None:
    client = await nats.connect(nats_server.url)
    await client.close()
    with pytest.raises(ConnectionClosedError):
        await natspublish.publish_many(client, [("t.x", b"1", {"A": "b"}, "")])


@pytest.mark.parametrize("hook", [True, False], ids=["read-off-the-wire", "through-nats-py"])
async def test_every_message_of_a_batch_gets_its_own_answer(
    nc: Client, hook: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored, no stream, no answer in time: each message is told apart, in order, and a
    publisher stopped while waiting answers what is left (PubAcks read by the connection's
    reader directly, or through nats-py's callbacks)."""
    monkeypatch.setattr(natsread, "HOOK", hook)
    await nc.jetstream().add_stream(name="S", subjects=["s.>"])
    silent = await nc.subscribe("quiet.>", cb=None)  # takes the message, never answers it
    publisher = StreamPublisher(nc, timeout=1)
    await publisher.start()
    answers = await publisher.publish_many(
        [("s.1", b"1", {}), ("none.here", b"2", {}), ("quiet.x", b"3", {}), ("s.2", b"4", {})]
    )
    assert answers[0] is None
    assert answers[3] is None
    assert answers[1] == "no stream takes this subject (503 no responders)"
    assert answers[2] == "no PubAck within 1 s"
    assert publisher._waiting == {}

    publisher.timeout = 60
    waiting = asyncio.create_task(publisher.publish_many([("quiet.y", b"5", {})]))
    async with asyncio.timeout(30):
        while not publisher._waiting:
            await asyncio.sleep(0.01)
    await publisher.stop()
    assert await waiting == ["publisher stopped"]
    await silent.unsubscribe()
