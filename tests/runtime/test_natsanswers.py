"""Answers read off the wire (bridge.natsanswers), on a real nats-server: they reach their
function with the inline status, the connection's other subscriptions are served as before, a
failing function breaks nothing, and the route survives a server restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from bridge import natsanswers, natspublish, natsread
from bridge.natsconnect import NatsIdentity, connect
from bridge.natsserver import NatsServer


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    yield client
    await client.close()


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("hook", [True, False], ids=["read-off-the-wire", "through-nats-py"])
async def test_answers_and_other_messages_each_reach_their_own(
    nc: Client, hook: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(natsread, "HOOK", hook)
    answers: list[tuple[str, bytes, str | None]] = []
    others: list[Msg] = []

    async def keep(message: Msg) -> None:
        others.append(message)

    await nc.subscribe("plain.>", cb=keep)
    subscription = await natsanswers.subscribe_answers(
        nc, "answers.*", lambda *answer: answers.append(answer)
    )
    assert natsread.routed(nc) is hook  # which of the two paths this is
    before = nc.stats["in_msgs"]
    await natspublish.publish_many(
        nc,
        [
            ("answers.1", b'{"seq": 1}', None, ""),
            ("plain.x", b"p", {"A": "b"}, ""),
            ("answers.2", b"", {"X": "y"}, ""),
        ],
    )
    await until(lambda: len(answers) == 2 and len(others) == 1)
    assert answers == [("answers.1", b'{"seq": 1}', None), ("answers.2", b"", None)]
    assert others[0].subject == "plain.x"
    assert others[0].headers == {"A": "b"}
    assert nc.stats["in_msgs"] - before == 3

    await natsanswers.unsubscribe_answers(nc, subscription)
    await natspublish.publish_many(
        nc, [("answers.3", b"late", None, ""), ("plain.y", b"", None, "")]
    )
    await until(lambda: len(others) == 2)
    assert len(answers) == 2


async def test_a_503_reaches_the_answer_as_its_status(nc: Client) -> None:
    answers: list[tuple[str, bytes, str | None]] = []
    await natsanswers.subscribe_answers(nc, "inbox.*", lambda *answer: answers.append(answer))
    # A request nobody serves, with its reply on the answers' inbox: the server says 503.
    await natspublish.publish_many(nc, [("nobody.home", b"", {"X": "y"}, "inbox.7")])
    await until(lambda: bool(answers))
    assert answers == [("inbox.7", b"", "503")]


async def test_a_failing_answer_breaks_nothing(nc: Client) -> None:
    seen: list[str] = []

    def answer(subject: str, data: bytes, status: str | None) -> None:
        seen.append(subject)
        raise ValueError("boom")

    await natsanswers.subscribe_answers(nc, "answers.*", answer)
    await natspublish.publish_many(nc, [("answers.1", b"", None, ""), ("answers.2", b"", None, "")])
    await until(lambda: len(seen) == 2)
    await natspublish.flush(nc)
    assert nc.is_connected


@pytest.mark.servers
async def test_answers_still_arrive_after_the_server_restarts(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    server.start()
    back = asyncio.Event()

    async def reconnected() -> None:
        back.set()

    client = await nats.connect(
        server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1, reconnected_cb=reconnected
    )
    try:
        answers: list[str] = []
        await natsanswers.subscribe_answers(
            client, "answers.*", lambda subject, *_: answers.append(subject)
        )
        await natspublish.publish_many(client, [("answers.1", b"", None, "")])
        await until(lambda: answers == ["answers.1"])
        server.kill()
        server.start()
        async with asyncio.timeout(30):
            await back.wait()
        await natspublish.flush(client)
        await natspublish.publish_many(client, [("answers.2", b"", None, "")])
        await until(lambda: answers == ["answers.1", "answers.2"])
    finally:
        await client.close()
        server.kill()


async def test_bytes_that_are_not_utf8_cannot_stop_a_guarded_reader(
    nats_server: NatsServer,
) -> None:
    """nats-py decodes a message's subject and reply subject, and a header block's inline status
    line, as strict UTF-8, and the exception for bytes that are not stopped the connection's
    reader for good. Every connection made by natsconnect is guarded: such a subject reads with
    U+FFFD, such a block as ASCII, and the reader goes on."""
    nc = await connect(NatsIdentity(nats_server.url), name="guarded")
    seen: list[tuple[str, str, bytes]] = []

    async def keep(message: Msg) -> None:
        seen.append((message.subject, message.reply, message.data))

    try:
        await nc.subscribe("guarded.>", cb=keep)
        await natspublish.flush(nc)
        reader, writer = await asyncio.open_connection(*nats_server.url[7:].rsplit(":", 1))
        await reader.readline()  # INFO
        # Header blocks that imitate a server status, with bytes beyond ASCII where nats-py
        # reads them at fixed offsets and decodes them strictly.
        statuses = [
            b"NATS/1.0 \xff\xfe\xfd\r\n\r\n",
            b"NATS/1.0 408 Request\xff Timeout\r\nNats-Pending-Messages: 5\r\n\r\n",
            b"NATS/1.0 100\r\nX: \xc3\r\n\r\n",
        ]
        writer.write(
            b'CONNECT {"verbose":false,"headers":true}\r\n'
            b"PUB guarded.\xff\xfe 1\r\na\r\n"
            b"PUB guarded.ok \xc3(.reply 1\r\nb\r\n"
            b"PUB guarded.caf\xc3\xa9 1\r\nc\r\n"
            + b"".join(
                b"HPUB guarded.status %d %d\r\n%bs\r\n" % (len(block), len(block) + 1, block)
                for block in statuses
            )
            + b"PING\r\n"
        )
        await writer.drain()
        assert (await reader.readline()).startswith(b"PONG")
        writer.close()
        await nc.publish("guarded.after", b"d")
        await until(lambda: len(seen) == 7)
        assert seen == [
            ("guarded.\ufffd\ufffd", "", b"a"),
            ("guarded.ok", "\ufffd(.reply", b"b"),
            ("guarded.caf\u00e9", "", b"c"),  # valid UTF-8 reads as it is
            ("guarded.status", "", b"s"),
            ("guarded.status", "", b"s"),
            ("guarded.status", "", b"s"),
            ("guarded.after", "", b"d"),
        ]
    finally:
        await nc.close()
