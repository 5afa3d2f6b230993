"""What the edge remembers of what it published, and what it publishes again: bounded by age,
count and bytes; only to the subject first used; on request only for inboxes, a few times."""

from __future__ import annotations

import orjson
import pytest
from nats.aio.msg import Msg

from bridge.contract import REPLIES_AGAIN_MAX
from bridge.edge import delivered
from bridge.edge.delivered import (
    AgainRequestError,
    RecentlySent,
    Resender,
    requested_subjects,
)
from bridge.edge.metrics import EdgeMetrics
from bridge.runtime.memory import MemoryBus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def subjects_of(sent: list[delivered.Sent]) -> list[str]:
    return [s.subject for s in sent]


def test_messages_are_forgotten_after_their_time() -> None:
    clock = Clock()
    recent = RecentlySent(keep_seconds=60, clock=clock)
    recent.remember("_INBOX.a.1", b"one", {})
    clock.now += 30
    recent.remember("_INBOX.a.2", b"two", {})
    clock.now += 31
    assert subjects_of(recent.since(0)) == ["_INBOX.a.2"]
    assert recent.asked_again(["_INBOX.a.1"]) == []
    clock.now += 30
    assert recent.since(0) == []
    assert len(recent) == 0
    assert recent.bytes == 0


def test_the_oldest_go_first_past_the_count_or_the_bytes() -> None:
    recent = RecentlySent(max_count=3, clock=Clock())
    for number in range(5):
        recent.remember(f"_INBOX.a.{number}", b"x", {})
    assert subjects_of(recent.since(0)) == ["_INBOX.a.2", "_INBOX.a.3", "_INBOX.a.4"]
    small = RecentlySent(max_bytes=3000, clock=Clock())
    for number in range(5):
        small.remember(f"_INBOX.a.{number}", b"x" * 1000, {"Rb-Status": "ok"})
    assert subjects_of(small.since(0)) == ["_INBOX.a.3", "_INBOX.a.4"]
    assert small.bytes <= 3000
    small.remember("_INBOX.big", b"x" * 5000, {})  # bigger than the bound: not kept at all
    assert small.since(0) == []
    assert small.bytes == 0


def test_since_gives_what_was_published_from_a_moment_on_in_order() -> None:
    clock = Clock()
    recent = RecentlySent(clock=clock)
    for number in range(4):
        recent.remember(f"_INBOX.a.{number}", b"", {})
        clock.now += 1
    assert subjects_of(recent.since(1001.5)) == ["_INBOX.a.2", "_INBOX.a.3"]


def test_asked_again_gives_the_latest_to_each_subject_a_few_times_at_most() -> None:
    recent = RecentlySent(clock=Clock())
    recent.remember("_INBOX.a.1", b"old", {})
    recent.remember("_INBOX.a.1", b"new", {})
    recent.remember("_INBOX.a.2", b"other", {})
    for _ in range(delivered.MAX_ASKED_AGAIN):
        (sent,) = recent.asked_again(["_INBOX.a.1", "_INBOX.a.1", "_INBOX.unknown"])
        assert sent.payload == b"new"
    assert recent.asked_again(["_INBOX.a.1"]) == []  # no amplifier for a flood of requests
    assert [s.payload for s in recent.asked_again(["_INBOX.a.2"])] == [b"other"]


def test_a_forgotten_older_message_leaves_the_latest_to_its_subject() -> None:
    recent = RecentlySent(max_count=2, clock=Clock())
    recent.remember("_INBOX.a.1", b"first", {})
    recent.remember("_INBOX.a.1", b"second", {})
    recent.remember("_INBOX.a.2", b"third", {})  # the first is forgotten
    assert [s.payload for s in recent.asked_again(["_INBOX.a.1"])] == [b"second"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"subjects": []}', "not a list"),
        (b'["_INBOX.a", 3]', "not a list"),
        (b"null", "not a list"),
        (orjson.dumps(["_INBOX.a"] * (REPLIES_AGAIN_MAX + 1)), "more than"),
    ],
)
def test_a_request_that_is_not_a_list_of_subjects_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(AgainRequestError, match=problem):
        requested_subjects(data)


def test_only_inboxes_of_a_sane_length_can_be_asked_for() -> None:
    named = ["_INBOX.a.1", "claims.results", "rb.out.docs.parse", "_INBOX." + "x" * 600, ">"]
    assert requested_subjects(orjson.dumps(named)) == ["_INBOX.a.1"]


def message(data: bytes) -> Msg:
    return Msg(None, subject="rb.replies.again", data=data)  # type: ignore[arg-type]


async def test_an_agent_that_asks_gets_what_was_sent_to_it_on_its_own_subject() -> None:
    bus, metrics = MemoryBus(), EdgeMetrics()
    resender = Resender(bus, metrics, RecentlySent(clock=Clock()))
    await resender.publish("_INBOX.desk.1", b'{"ok": 1}', {"Rb-Status": "ok"})
    await resender.publish("claims.results", b"r", {})
    bus.published.clear()
    await resender.on_again(message(orjson.dumps(["_INBOX.desk.1", "_INBOX.desk.2"])))
    (again,) = bus.published
    assert (again.subject, again.payload, again.headers) == (
        "_INBOX.desk.1",
        b'{"ok": 1}',
        {"Rb-Status": "ok"},
    )
    await resender.on_again(message(orjson.dumps(["claims.results"])))  # not an inbox
    await resender.on_again(message(b"garbage"))
    assert len(bus.published) == 1
    assert metrics.sent_again.labels("asked")._value.get() == 1
    assert metrics.again_requests_refused._value.get() == 1


def on_a_clock() -> tuple[Clock, MemoryBus, Resender]:
    clock, bus = Clock(), MemoryBus()
    return clock, bus, Resender(bus, EdgeMetrics(), RecentlySent(clock=clock))


async def test_a_connection_back_publishes_again_what_was_sent_around_the_loss() -> None:
    clock, bus, resender = on_a_clock()
    await resender.publish("_INBOX.a.early", b"", {})
    clock.now += delivered.RECONNECT_GRACE + 1
    await resender.publish("_INBOX.a.just-before", b"", {})
    clock.now += 1
    resender.connection_lost()
    await resender.publish("claims.results", b"while away", {})
    clock.now += 1
    resender.connection_lost()  # a second failed attempt does not move the moment of the loss
    bus.published.clear()
    await resender.connection_back()
    assert [p.subject for p in bus.published] == ["_INBOX.a.just-before", "claims.results"]
    bus.published.clear()
    await resender.connection_back()  # once per loss
    assert bus.published == []


async def test_a_loss_noticed_late_publishes_again_all_since_the_server_last_confirmed() -> None:
    clock, bus, resender = on_a_clock()
    await resender.publish("_INBOX.a.confirmed", b"", {})
    clock.now += delivered.RECONNECT_GRACE + 1
    resender.confirmed(resender.moment())
    for number in range(3):  # a silent server: these went nowhere for half a minute
        clock.now += 10
        await resender.publish(f"_INBOX.a.{number}", b"", {})
    resender.connection_lost()
    bus.published.clear()
    await resender.connection_back()
    assert [p.subject for p in bus.published] == ["_INBOX.a.0", "_INBOX.a.1", "_INBOX.a.2"]
