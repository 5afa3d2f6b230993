"""Asks that survive a lost request, a lost answer or a lost agent instance (edge_agent.asks),
against a real nats-server. The cluster tests kill a real server under a flow of asks."""

from __future__ import annotations

import asyncio
from collections import Counter

import nats
import orjson
import pytest
from nats.aio.msg import Msg

from bridge import natspublish
from bridge.natsserver import NatsServer
from edge_agent import Agent, Request, asks
from edge_agent.asks import (
    HEADER_ASK_ANSWERED,
    HEADER_ASK_ID,
    HEADER_ASK_RECEIVED,
    HEADER_ASK_UNKNOWN,
)


async def next_message(queue: asyncio.Queue[Msg]) -> Msg:
    return await asyncio.wait_for(queue.get(), 20)


async def test_a_repeated_ask_gets_its_receipt_or_its_answer_again_and_runs_once(
    nats_server: NatsServer,
) -> None:
    runs: Counter[int] = Counter()
    release = asyncio.Event()
    agent = Agent("echo", nats_url=nats_server.url)

    @agent.handle("work.echo")
    async def echo(request: Request) -> dict[str, int]:
        n = request.json()["n"]
        runs[n] += 1
        await release.wait()
        return {"n": n, "run": runs[n]}

    async with agent:
        raw = await nats.connect(nats_server.url)
        try:
            got: asyncio.Queue[Msg] = asyncio.Queue()
            await raw.subscribe("reply.>", cb=got.put)
            ask = {HEADER_ASK_ID: "ask-1"}
            await raw.publish("work.echo", b'{"n": 1}', reply="reply.1", headers=ask)
            receipt = await next_message(got)
            assert receipt.data == b""
            instance = (receipt.headers or {})[HEADER_ASK_RECEIVED]
            # Repeats while the handler runs, to the subject and to the instance: receipts only.
            await raw.publish("work.echo", b'{"n": 1}', reply="reply.1", headers=ask)
            await raw.publish(instance, b'{"n": 1}', reply="reply.1", headers=ask)
            for _ in range(2):
                again = await next_message(got)
                assert (again.data, again.headers) == (b"", {HEADER_ASK_RECEIVED: instance})
            release.set()
            answer = await next_message(got)
            assert orjson.loads(answer.data) == {"n": 1, "run": 1}
            # Repeats after the answer: the same answer, from memory.
            await raw.publish("work.echo", b'{"n": 1}', reply="reply.1", headers=ask)
            await raw.publish(instance, b'{"n": 1}', reply="reply.1", headers=ask)
            for _ in range(2):
                assert (await next_message(got)).data == answer.data
            # An ask the instance does not know, sent to the instance: ask the subject again.
            await raw.publish(instance, b"{}", reply="reply.2", headers={HEADER_ASK_ID: "other"})
            unknown = await next_message(got)
            assert (unknown.data, unknown.headers) == (b"", {HEADER_ASK_UNKNOWN: "1"})
            # The same id from another reply subject is another ask; a request with no id (a
            # plain NATS request) is answered each time and gets no receipt.
            # A quick answer comes with no receipt before it, and says its agent sends them.
            await raw.publish("work.echo", b'{"n": 1}', reply="reply.3", headers=ask)
            quick = await next_message(got)
            assert (orjson.loads(quick.data), quick.headers) == (
                {"n": 1, "run": 2},
                {HEADER_ASK_ANSWERED: "1"},
            )
            for _ in range(2):
                plain = await raw.request("work.echo", b'{"n": 2}', timeout=20)
                assert not plain.headers
            assert runs == {1: 2, 2: 2}
        finally:
            await raw.close()


async def test_asks_lost_on_their_way_are_sent_again_and_each_runs_once(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member of the agent's queue group that loses every ask it gets (as a dying server
    does): the asker, having no receipt, sends the ask again until the agent has it."""
    monkeypatch.setattr(asks, "RECEIPT_WAIT", 0.2)
    runs: Counter[int] = Counter()
    agent = Agent("echo", nats_url=nats_server.url)

    @agent.handle("work.echo")
    async def echo(request: Request) -> dict[str, int]:
        runs[request.json()["n"]] += 1
        return request.json()  # type: ignore[no-any-return]

    async with agent, Agent("client", nats_url=nats_server.url) as client:
        assert await client.ask("work.echo", {"n": -1}, timeout=20) == {"n": -1}
        raw = await nats.connect(nats_server.url)
        lost = 0

        async def lose(_message: Msg) -> None:
            nonlocal lost
            lost += 1

        try:
            await raw.subscribe("work.echo", queue="echo", cb=lose)
            await natspublish.flush(raw)
            answers = await asyncio.gather(
                *(client.ask("work.echo", {"n": n}, timeout=60) for n in range(40))
            )
        finally:
            await raw.close()
    assert answers == [{"n": n} for n in range(40)]
    assert lost > 0
    assert client.stats.asks_sent_again >= lost
    assert set(runs.values()) == {1}, "an ask ran twice"


async def test_an_ask_checked_on_goes_to_the_instance_that_has_it(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two instances share an agent's work; a slow ask is checked on many times, always at the
    instance that sent its receipt, so it runs once."""
    monkeypatch.setattr(asks, "CHECK_EVERY", 0.1)
    runs: Counter[int] = Counter()
    by: Counter[str] = Counter()
    instances = [Agent("slow", nats_url=nats_server.url, instance=name) for name in "ab"]
    for instance in instances:

        @instance.handle("work.slow")
        async def slow(request: Request, name: str = instance.instance) -> dict[str, int]:
            runs[request.json()["n"]] += 1
            by[name] += 1
            await asyncio.sleep(0.6)
            return request.json()  # type: ignore[no-any-return]

    async with instances[0], instances[1], Agent("client", nats_url=nats_server.url) as client:
        answers = await asyncio.gather(
            *(client.ask("work.slow", {"n": n}, timeout=60) for n in range(20))
        )
    assert answers == [{"n": n} for n in range(20)]
    assert set(runs.values()) == {1}, "an ask ran twice"
    assert set(by) == {"a", "b"}
    assert client.stats.asks_sent_again >= 20  # each was checked on


async def test_an_ask_whose_instance_stopped_is_taken_by_another(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asks, "CHECK_EVERY", 0.2)
    taken = asyncio.Event()
    first, second = (Agent("worker", nats_url=nats_server.url, instance=n) for n in "ab")

    @first.handle("work.job")
    async def stuck(request: Request) -> str:
        if not request.json().get("stick"):
            return "done by a"
        taken.set()
        await asyncio.Event().wait()  # until cancelled
        return "never"

    @second.handle("work.job")
    async def done(request: Request) -> str:
        return "done by b"

    await first.start()
    async with Agent("client", nats_url=nats_server.url) as client:
        # Once its agents have answered, the asker knows they send receipts.
        assert await client.ask("work.job", {}, timeout=20) == "done by a"
        asked = asyncio.create_task(client.ask("work.job", {"stick": True}, timeout=60))
        await asyncio.wait_for(taken.wait(), 20)
        await second.start()
        # Its handler is cancelled, with or without a receipt sent: the ask was never answered.
        await first.stop(grace=0)
        assert await asked == "done by b"
    await second.stop()


async def test_a_responder_without_receipts_is_never_asked_twice_for_want_of_one(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asks, "RECEIPT_WAIT", 0.05)
    monkeypatch.setattr(asks, "CHECK_EVERY", 0.05)
    raw = await nats.connect(nats_server.url)
    got = 0

    async def plain(message: Msg) -> None:  # a service that is not an agent of this SDK
        nonlocal got
        got += 1
        await asyncio.sleep(1.0)
        await raw.publish(message.reply, b'"plain"')

    try:
        await raw.subscribe("plain.slow", cb=plain)
        await natspublish.flush(raw)
        async with Agent("client", nats_url=nats_server.url) as client:
            assert await client.ask("plain.slow", {}, timeout=20) == "plain"
            assert await client.ask("plain.slow", {}, timeout=20) == "plain"
        assert (got, client.stats.asks_sent_again) == (2, 0)
    finally:
        await raw.close()


async def test_a_forged_receipt_cannot_send_an_ask_elsewhere(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receipt naming the cloud's outbound subject (or any subject that is not an agent
    instance's inbox): the ask is checked on at its own subject, never sent there."""
    monkeypatch.setattr(asks, "CHECK_EVERY", 0.1)
    raw = await nats.connect(nats_server.url)
    leaked: list[Msg] = []
    got = 0

    async def forger(message: Msg) -> None:
        nonlocal got
        got += 1
        if got == 1:
            forged = {HEADER_ASK_RECEIVED: "rb.out.docs.parse"}
            await raw.publish(message.reply, b"", headers=forged)
        else:
            await raw.publish(message.reply, b'"answered"')

    async def leak(message: Msg) -> None:
        leaked.append(message)

    try:
        await raw.subscribe("work.forged", cb=forger)
        await raw.subscribe("rb.out.>", cb=leak)
        await natspublish.flush(raw)
        async with Agent("client", nats_url=nats_server.url) as client:
            assert await client.ask("work.forged", {"secret": 1}, timeout=20) == "answered"
        await natspublish.flush(raw)
        assert (got, leaked) == (2, [])
    finally:
        await raw.close()


async def test_an_ask_id_longer_than_the_sdk_makes_is_served_as_a_plain_request(
    nats_server: NatsServer,
) -> None:
    """Ids are the asker's to choose, but not its to grow the memory with: a long one is served
    each time, with no receipt and nothing remembered."""
    runs = 0
    agent = Agent("echo", nats_url=nats_server.url)

    @agent.handle("work.echo")
    async def echo(request: Request) -> int:
        nonlocal runs
        runs += 1
        return runs

    async with agent:
        raw = await nats.connect(nats_server.url)
        try:
            long_id = {HEADER_ASK_ID: "x" * 65}
            for expected in (1, 2):
                answer = await raw.request("work.echo", b"{}", timeout=20, headers=long_id)
                assert (orjson.loads(answer.data), answer.headers) == (expected, None)
        finally:
            await raw.close()


async def test_an_agent_back_on_nats_asks_the_bridge_for_its_cloud_replies_more_than_once(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ask_cloud: the reply is published by the edge bridge on core NATS. An agent whose
    connection came back names the replies it waits on, on rb.replies.again, more than once (a
    bridge whose own connection moved at the same moment may miss a request)."""
    monkeypatch.setattr(asks, "REPLIES_AGAIN_AFTER", (0.0, 0.1, 0.2))
    raw = await nats.connect(nats_server.url)
    await raw.jetstream().add_stream(name="RB_OUT", subjects=["rb.out.>"])
    agent = Agent("desk", nats_url=nats_server.url, connect={"reconnect_time_wait": 0.1})
    async with agent:
        waiting = asyncio.create_task(agent.ask_cloud("docs.parse", {"n": 1}, timeout=60))
        stored = await raw.jetstream().pull_subscribe("rb.out.>", "test")
        (sent,) = await stored.fetch(1, timeout=20)
        reply_to = (sent.headers or {})["Rb-Reply-To"]
        await raw.close()
        await asyncio.to_thread(nats_server.restart)
        raw = await nats.connect(nats_server.url)
        requests: asyncio.Queue[Msg] = asyncio.Queue()
        await raw.subscribe("rb.replies.again", cb=requests.put)
        named = [orjson.loads((await next_message(requests)).data) for _ in range(2)]
        assert named == [[reply_to], [reply_to]]  # the first may come before this subscription
        await raw.publish(reply_to, b'{"ok": true}', headers={"Rb-Status": "ok"})
        assert await waiting == {"ok": True}
    await raw.close()
