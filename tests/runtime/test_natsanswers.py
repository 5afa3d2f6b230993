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
    await nc.flush()
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
        await client.flush()
        await natspublish.publish_many(client, [("answers.2", b"", None, "")])
        await until(lambda: answers == ["answers.1", "answers.2"])
    finally:
        await client.close()
        server.kill()
