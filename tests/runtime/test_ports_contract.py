"""The in-memory stand-ins behave as NATS does where the runtimes depend on it.

Every case runs twice: against :mod:`bridge.runtime.memory` and against a real nats-server
(an interest stream bounded and refusing like the bridge's, a durable pull consumer, the runtimes' own
:class:`StreamPublisher`). A difference is a bug in the stand-in, and the fast tests built on it
would prove nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import pytest
from nats.errors import BadHeaderError
from nats.js.api import ConsumerConfig, DiscardPolicy, RetentionPolicy, StreamConfig

from bridge import natspublish
from bridge.natsserver import NatsServer
from bridge.runtime.memory import MemoryBus, MemoryStream
from bridge.runtime.ports import Bus, Publisher, Pulled
from bridge.runtime.publisher import PERMANENT_PREFIX, NatsBus, StreamPublisher
from tests.eventually import eventually

MAX_MSGS = 5
MAX_SIZE = 1024


@dataclass
class Backend:
    publisher: Publisher
    bus: Bus
    pull_batch: Callable[[int, float], Awaitable[Sequence[Pulled]]]
    published: Callable[[], Awaitable[list[tuple[str, bytes, dict[str, str]]]]]  # on notice.>
    stored: Callable[[], Awaitable[int]]

    async def pull(self, batch: int, timeout: float = 2.0) -> Sequence[Pulled]:
        return list(await self.pull_batch(batch, timeout))


async def memory_backend() -> AsyncIterator[Backend]:
    stream = MemoryStream(subjects=["c.>"], max_msgs=MAX_MSGS, max_msg_size=MAX_SIZE)
    bus = MemoryBus()

    async def published() -> list[tuple[str, bytes, dict[str, str]]]:
        return [(p.subject, p.payload, p.headers) for p in bus.published]

    async def stored() -> int:
        return stream.messages

    yield Backend(stream, bus, stream.pull, published, stored)


async def nats_backend(server: NatsServer) -> AsyncIterator[Backend]:
    connection = await nats.connect(server.url)
    js = connection.jetstream()
    await js.add_stream(
        StreamConfig(
            name="C", subjects=["c.>"], max_msgs=MAX_MSGS, max_msg_size=MAX_SIZE,
            discard=DiscardPolicy.NEW, retention=RetentionPolicy.INTEREST,
        )
    )  # fmt: skip
    await js.add_consumer("C", ConsumerConfig(durable_name="d", ack_wait=60))
    subscription = await js.pull_subscribe_bind("d", "C")
    publisher = StreamPublisher(connection)
    await publisher.start()
    seen: list[tuple[str, bytes, dict[str, str]]] = []

    async def keep(message: Any) -> None:
        seen.append((message.subject, message.data, dict(message.headers or {})))

    await connection.subscribe("notice.>", cb=keep)

    async def pull(batch: int, timeout: float) -> list[Any]:
        try:
            return list(await subscription.fetch(batch, timeout=timeout))
        except TimeoutError:  # nats-py raises its own or asyncio's, depending on the moment
            return []

    async def published() -> list[tuple[str, bytes, dict[str, str]]]:
        await natspublish.flush(connection)
        return list(seen)

    async def stored() -> int:
        return int((await js.stream_info("C")).state.messages)

    yield Backend(publisher, NatsBus(connection), pull, published, stored)
    await publisher.stop()
    await connection.close()


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.servers)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        source = memory_backend()
    else:
        source = nats_backend(request.getfixturevalue("nats_server"))
    async for made in source:
        yield made


def item(number: int, **headers: str) -> tuple[str, bytes, dict[str, str]]:
    return (f"c.{number}", b'{"n": %d}' % number, {"X-N": str(number), **headers})


async def test_what_is_published_is_pulled_in_order_with_its_headers(backend: Backend) -> None:
    assert await backend.publisher.publish_many([item(1), item(2), item(3)]) == [None] * 3
    pulled = await backend.pull(10)
    assert [(m.subject, m.data, (m.headers or {}).get("X-N")) for m in pulled] == [
        ("c.1", b'{"n": 1}', "1"), ("c.2", b'{"n": 2}', "2"), ("c.3", b'{"n": 3}', "3"),
    ]  # fmt: skip
    sequences = [m.metadata.sequence.stream for m in pulled]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == 3
    assert [m.metadata.num_delivered for m in pulled] == [1, 1, 1]


async def test_a_message_id_seen_before_is_acknowledged_and_stored_once(backend: Backend) -> None:
    answers = await backend.publisher.publish_many(
        [item(1, **{"Nats-Msg-Id": "a"}), item(2, **{"Nats-Msg-Id": "a"})]
    )
    assert answers == [None, None]
    assert await backend.stored() == 1


async def test_a_full_stream_refuses_for_now_and_drops_nothing(backend: Backend) -> None:
    answers = await backend.publisher.publish_many([item(n) for n in range(MAX_MSGS + 1)])
    assert answers[:MAX_MSGS] == [None] * MAX_MSGS
    (refused,) = answers[MAX_MSGS:]
    assert refused is not None
    assert not refused.startswith(PERMANENT_PREFIX)
    assert await backend.stored() == MAX_MSGS
    assert [m.subject for m in await backend.pull(10)] == [f"c.{n}" for n in range(MAX_MSGS)]


async def test_a_message_over_the_size_limit_is_refused_for_good(backend: Backend) -> None:
    (answer,) = await backend.publisher.publish_many([("c.big", b"x" * (MAX_SIZE + 1), {})])
    assert answer is not None
    assert answer.startswith(PERMANENT_PREFIX)
    assert await backend.stored() == 0


async def test_a_subject_no_stream_takes_is_refused_for_now(backend: Backend) -> None:
    (answer,) = await backend.publisher.publish_many([("elsewhere.x", b"{}", {})])
    assert answer is not None
    assert not answer.startswith(PERMANENT_PREFIX)


async def test_ack_and_term_settle_and_nak_delivers_again_after_the_delay(
    backend: Backend,
) -> None:
    await backend.publisher.publish_many([item(1), item(2), item(3)])
    first, second, third = await backend.pull(3)
    await first.ack()
    await second.term()
    await third.nak(delay=0.2)
    (again,) = await backend.pull(3, timeout=5)
    assert (again.subject, again.metadata.num_delivered) == ("c.3", 2)
    assert again.metadata.sequence.stream == third.metadata.sequence.stream
    await again.ack()
    assert await backend.pull(3, timeout=0.3) == []

    async def gone() -> bool:
        return await backend.stored() == 0

    await eventually(gone, "acked, termed and acked again: nothing stored", timeout=10, every=0.02)


async def test_a_core_publish_reaches_subscribers_with_its_headers(backend: Backend) -> None:
    await backend.bus.publish("notice.x", b"", headers={"Rb-Status": "denied"})

    async def seen() -> bool:
        return bool(await backend.published())

    await eventually(seen, "the notice", timeout=10, every=0.02)
    assert await backend.published() == [("notice.x", b"", {"Rb-Status": "denied"})]


async def test_a_batch_reaches_subscribers_in_order_and_bad_input_sends_none_of_it(
    backend: Backend,
) -> None:
    await backend.bus.publish_many(
        [("notice.a", b"1", {"X-N": "1"}), ("notice.b", b"2", {}), ("notice.c", b"3", {"X-N": "3"})]
    )
    with pytest.raises(BadHeaderError):
        await backend.bus.publish_many([("notice.d", b"4", {}), ("notice.e", b"5", {"X(y)": "v"})])
    await backend.bus.publish("notice.z", b"")

    async def seen() -> bool:
        return len(await backend.published()) >= 4

    await eventually(seen, "the batch and the last notice", timeout=10, every=0.02)
    assert await backend.published() == [
        ("notice.a", b"1", {"X-N": "1"}), ("notice.b", b"2", {}), ("notice.c", b"3", {"X-N": "3"}),
        ("notice.z", b"", {}),
    ]  # fmt: skip
