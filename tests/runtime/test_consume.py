"""The one consumer loop (standing pull requests), against a real nats-server: messages arrive as
they are stored, nothing is asked for at idle beyond one request per ``expires``, what is asked
for and held stays within the batch, a restarted server is noticed by the missing heartbeats,
and a dead consumer's messages come back within ``ack_wait`` while a live one's held messages
do not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from nats.js.api import Header

from bridge import natspublish, natsread
from bridge.natsconsume import PullConsumer, keep_in_progress, settle_many
from bridge.natsserver import NatsServer
from bridge.runtime.settlement import Settlement
from tests.runtime.world import World

STREAM, DURABLE = "RB_TEST", "worker"


@pytest.fixture(params=[True, False], ids=["read-off-the-wire", "through-nats-py"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Each consumer test runs on both paths: messages read off the wire, and nats-py's."""
    monkeypatch.setattr(natsread, "HOOK", request.param)
    return bool(request.param)


@pytest.fixture
async def nc(nats_server: NatsServer, reading: bool) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = client.jetstream()
    await js.add_stream(name=STREAM, subjects=["test.>"])
    await js.add_consumer(
        STREAM,
        config=api.ConsumerConfig(
            durable_name=DURABLE, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=4
        ),
    )
    yield client
    await client.close()


async def publish(client: Client, count: int, start: int = 0) -> None:
    js = client.jetstream()
    for number in range(start, start + count):
        await js.publish("test.work", str(number).encode(), headers={"Nats-Msg-Id": str(number)})


async def ack_pending(nc: Client, count: int) -> api.ConsumerInfo:
    """The consumer's info once ``count`` messages are waiting for an ack (the server takes the
    acks it has received in turn: a flush says they arrived, not that they were applied)."""
    async with asyncio.timeout(30):
        while True:
            info: api.ConsumerInfo = await nc.jetstream().consumer_info(STREAM, DURABLE)
            if info.num_ack_pending == count:
                return info
            await asyncio.sleep(0.05)


async def take_all(consumer: PullConsumer, count: int, timeout: float = 30) -> list[Msg]:
    taken: list[Msg] = []
    async with asyncio.timeout(timeout):
        while len(taken) < count:
            taken.extend(await consumer.take())
    return taken


async def test_messages_arrive_as_they_are_stored_and_in_batches_under_load(
    nc: Client, reading: bool
) -> None:
    consumer = PullConsumer(nc, STREAM, DURABLE, batch=64, expires=5, heartbeat=1)
    await consumer.start()
    assert natsread.routed(nc) is reading  # which of the two paths this is
    try:
        await publish(nc, 1)
        (first,) = await take_all(consumer, 1)
        assert first.data == b"0"
        await first.ack()
        await publish(nc, 500, start=1)
        rest = await take_all(consumer, 500)
        assert [int(m.data) for m in rest] == list(range(1, 501))  # in order, none lost
        for message in rest:
            await message.ack()
        assert consumer.requests < 500 / 32 + 4  # a request per half batch, not per message
    finally:
        await consumer.stop()


async def test_at_idle_only_one_request_per_expiry_goes_to_the_server(
    nc: Client, nats_server: NatsServer
) -> None:
    """Seen from outside: a second connection counts the pull requests on the wire."""
    watcher = await nats.connect(nats_server.url)
    seen: list[float] = []

    async def count(_message: Msg) -> None:
        seen.append(time.monotonic())

    await watcher.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{DURABLE}", cb=count)
    await natspublish.flush(watcher)
    consumer = PullConsumer(nc, STREAM, DURABLE, batch=64, expires=2, heartbeat=0.25)
    await consumer.start()
    started = time.monotonic()
    try:
        # Idle: the server answers with heartbeats; the client re-asks once per expiry.
        async with asyncio.timeout(30):
            while consumer.heartbeats < 12:
                await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        await natspublish.flush(watcher)
        # A 5 ms fetch loop would have sent hundreds in this time; standing requests send one
        # per expiry (and one more if a heartbeat is late on a loaded machine).
        assert 1 <= len(seen) <= elapsed / 2 + 2, (len(seen), elapsed)
    finally:
        await consumer.stop()
        await watcher.close()


async def test_what_is_asked_for_and_held_never_exceeds_the_batch(nc: Client) -> None:
    await publish(nc, 300)
    consumer = PullConsumer(nc, STREAM, DURABLE, batch=50, expires=5, heartbeat=1)
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while consumer.buffered < 50:
                await asyncio.sleep(0.02)
        await natspublish.flush(nc)
        await asyncio.sleep(0.3)  # anything beyond the batch would have arrived by now
        assert consumer.buffered == 50
        first = await consumer.take(20)
        assert len(first) == 20
        # 30 still held: more than half the batch, so nothing more is asked for yet.
        await natspublish.flush(nc)
        assert consumer.buffered == 30
        taken = await consumer.take(10)  # 20 left, under half: it asks for 30 more
        async with asyncio.timeout(30):
            while consumer.buffered < 50:
                await asyncio.sleep(0.02)
        assert consumer.buffered == 50
        # Paused: nothing more is asked for; what arrived can be handed back.
        consumer.pause()
        released = consumer.release()
        assert len(released) == 50
        for message in [*first, *taken, *released]:
            await message.nak()
    finally:
        await consumer.stop()


@pytest.mark.servers
async def test_a_restarted_server_is_noticed_by_the_missing_heartbeats(
    tmp_path: Path, reading: bool
) -> None:
    server = NatsServer(tmp_path / "nats")
    server.start()
    client = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        js = client.jetstream()
        await js.add_stream(name=STREAM, subjects=["test.>"])
        await js.add_consumer(
            STREAM,
            config=api.ConsumerConfig(durable_name=DURABLE, ack_policy=api.AckPolicy.EXPLICIT),
        )
        consumer = PullConsumer(client, STREAM, DURABLE, batch=16, expires=30, heartbeat=0.3)
        await consumer.start()
        server.kill()
        server.start()  # same port and store: the stream and consumer are still there
        async with asyncio.timeout(30):
            while True:  # reconnected, and JetStream recovered its store
                try:
                    await publish(client, 3)
                    break
                except nats.errors.Error:
                    await asyncio.sleep(0.1)
        taken = await take_all(consumer, 3)
        assert [m.data for m in taken] == [b"0", b"1", b"2"]
        assert [m.headers for m in taken] == [{"Nats-Msg-Id": str(n)} for n in range(3)]
        assert consumer.resets >= 1
        assert natsread.routed(client) is reading  # the route outlived the reconnect
        await consumer.stop()
    finally:
        await client.close()
        server.kill()


async def test_held_messages_stay_while_a_dead_consumers_come_back_within_ack_wait(
    nc: Client, nats_server: NatsServer
) -> None:
    """ack_wait is 4 s: one consumer holds its message, reporting progress; another takes one
    and dies (its connection closed). Only the dead one's message is delivered again."""
    await publish(nc, 2)
    holder = PullConsumer(nc, STREAM, DURABLE, batch=1, expires=5, heartbeat=1)
    await holder.start()
    async with asyncio.timeout(30):
        while not holder.buffered:
            await asyncio.sleep(0.02)
    holder.pause()  # the second message is for the consumer that dies
    (held,) = await holder.take()
    keeper = asyncio.create_task(keep_in_progress(nc, lambda: [held], every=0.5))
    doomed = await nats.connect(nats_server.url)
    dead = PullConsumer(doomed, STREAM, DURABLE, batch=1, expires=5, heartbeat=1)
    await dead.start()
    (lost,) = await take_all(dead, 1)
    await doomed.close()  # dies without settling
    try:
        await holder.resume()
        (again,) = await take_all(holder, 1)
        assert again.data == lost.data
        assert again.metadata.num_delivered == 2
        await again.ack()
        # The held message was never redelivered: it is still pending for the holder only.
        info = await ack_pending(nc, 1)
        assert info.num_redelivered == 0  # and it was not delivered again
    finally:
        keeper.cancel()
        await held.ack()
        await holder.stop()


async def test_the_runtimes_and_a_cloud_agent_ask_nothing_at_idle_beyond_one_request_each(
    world: World,
) -> None:
    """The edge bridge, the gateway's reply pump and a cloud agent, linked and idle: watched on
    both servers, each consumer sends one standing pull request and then nothing for the
    window (the fetch loops they replaced asked every 5 ms)."""
    await world.start_linked()
    agent = world.parser()
    await agent.start()
    seen: dict[str, int] = {}
    watchers = []
    for server in (world.edge_nats, world.cloud_nats):
        watcher = await nats.connect(server.url)

        async def count(message: Msg) -> None:
            seen[message.subject] = seen.get(message.subject, 0) + 1

        await watcher.subscribe("$JS.API.CONSUMER.MSG.NEXT.>", cb=count)
        await natspublish.flush(watcher)
        watchers.append(watcher)
    try:
        # Each consumer is up: the edge's, the reply pump's (the link is up) and the agent's.
        # Count over three seconds of idle: with 30 s expiry nothing should be re-asked.
        started = time.monotonic()
        await asyncio.sleep(3.0)
        elapsed = time.monotonic() - started
        for watcher in watchers:
            await natspublish.flush(watcher)
        assert sum(seen.values()) <= len(seen) * (1 + elapsed / 30) + 1, (seen, elapsed)
        # ... and each of the three has a pull request standing on its server.
        for client, stream, durable in (
            (watchers[0], "RB_OUT", "rbridge-edge"),
            (watchers[1], "RB_REPLY", "reply-plant-a"),
            (watchers[1], "RB_IN", "parser-docs_parse"),
        ):
            info = await client.jetstream().consumer_info(stream, durable)
            assert info.num_waiting >= 1, (stream, durable)
    finally:
        for watcher in watchers:
            await watcher.close()
        await agent.stop()


async def test_headers_are_read_as_nats_py_reads_them_and_settling_works(
    nc: Client, reading: bool
) -> None:
    """Headers no NATS client would send (a raw-protocol publisher: names with spaces or
    non-ASCII, a name twice, a value with invalid UTF-8, a line without a colon) reach the
    consumer as nats-py's own parse gives them; ack, nak with a delay and term settle."""
    block = (
        b"NATS/1.0\r\nRb-Class: internal\r\nBad Name: x\r\nR\xc3\xa9sum\xc3\xa9: y\r\n"
        b"Twice: 1\r\ntwice: 2\r\nTwice:3\r\nNo colon here\r\nValue:  \xff\xfe ok \r\n"
        b":empty name\r\n\r\n"
    )
    payload = b"{}"
    frame = b"HPUB test.raw %d %d\r\n%b%b\r\n" % (
        len(block),
        len(block) + len(payload),
        block,
        payload,
    )
    expected = nc._parse_header_lines(block[10:])
    assert "Bad Name" not in expected
    assert expected["Twice"] == "3"
    assert nc.connected_url is not None
    reader, writer = await asyncio.open_connection(nc.connected_url.hostname, nc.connected_url.port)
    await reader.readline()  # INFO
    writer.write(b'CONNECT {"verbose":false,"headers":true}\r\n' + frame * 3 + b"PING\r\n")
    await writer.drain()
    assert (await reader.readline()).startswith(b"PONG")
    writer.close()
    consumer = PullConsumer(nc, STREAM, DURABLE, batch=8, expires=5, heartbeat=1)
    await consumer.start()
    assert natsread.routed(nc) is reading
    try:
        first, second, third = await take_all(consumer, 3)
        assert [m.headers for m in (first, second, third)] == [expected] * 3
        assert first.subject == "test.raw"
        assert first.data == payload
        assert first.metadata.sequence.stream == 1
        assert first.metadata.num_delivered == 1
        await first.ack()
        await second.nak(delay=0.2)
        await third.term()
        (again,) = await take_all(consumer, 1)
        assert again.metadata.sequence.stream == 2
        assert again.metadata.num_delivered == 2
        await again.ack()
        assert (await ack_pending(nc, 0)).num_pending == 0
    finally:
        await consumer.stop()


async def test_settlement_sends_acks_naks_and_terms_together(nc: Client) -> None:
    """The runtimes' Settlement frames what queued up for a real consumer as one batch: each
    message settles as queued, a second settling of one is left out, a nak's delay holds."""
    await publish(nc, 4)
    consumer = PullConsumer(nc, STREAM, DURABLE, batch=8, expires=5, heartbeat=1)
    await consumer.start()
    try:
        acked, naked, termed, late = await take_all(consumer, 4)
        settlement = Settlement()
        settlement.ack(acked)
        settlement.nak(naked, delay=0.3)
        settlement.term(termed)
        settlement.term(acked)  # settled already in this batch: left out
        settlement.nak(late)
        sent = nc.stats["out_msgs"]
        await settlement.flush()
        assert nc.stats["out_msgs"] - sent == 4
        again = await take_all(consumer, 2)
        assert sorted((m.data, m.metadata.num_delivered) for m in again) == [(b"1", 2), (b"3", 2)]
        settlement.ack(again[0])
        settlement.ack(again[1])
        await settlement.flush()
        assert (await ack_pending(nc, 0)).num_pending == 0
    finally:
        await consumer.stop()


async def test_settling_on_a_closed_connection_leaves_the_messages_unsettled(
    nats_server: NatsServer, nc: Client
) -> None:
    await publish(nc, 1)
    doomed = await nats.connect(nats_server.url)
    consumer = PullConsumer(doomed, STREAM, DURABLE, batch=1, expires=5, heartbeat=1)
    await consumer.start()
    (message,) = await take_all(consumer, 1)
    await consumer.stop()
    await doomed.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await settle_many(doomed, [("ack", message, None)])
    assert not message._ackd  # still to be settled (or redelivered after ack_wait)


async def test_a_stored_message_is_never_taken_for_a_server_status(nc: Client) -> None:
    """A server status on a pull request's inbox has no reply subject; a stored message has the
    one its ack goes to. One whose headers read as a status (a publisher's imitation) is a
    message: delivered, not counted as a heartbeat, and no sign that the consumer was lost."""
    consumer = PullConsumer(nc, STREAM, DURABLE, batch=8, expires=5, heartbeat=1)
    reply = f"$JS.ACK.{STREAM}.{DURABLE}.1.1.1.1700000000000000000.0"
    for status, description in (("100", "Idle Heartbeat"), ("409", "Consumer Deleted")):
        headers = {"Status": status, Header.DESCRIPTION: description, "Rb-Class": "internal"}
        await consumer._on_message(Msg(nc, "test.x", reply, b"{}", headers))
    taken = await consumer.take()
    assert [m.headers for m in taken] == [
        {"Status": "100", "Description": "Idle Heartbeat", "Rb-Class": "internal"},
        {"Status": "409", "Description": "Consumer Deleted", "Rb-Class": "internal"},
    ]
    assert all(type(name) is str for m in taken for name in m.headers or {})
    assert consumer.heartbeats == 0
    assert not consumer.lost
