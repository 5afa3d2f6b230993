"""Frames built by the bridge are byte for byte what nats-py builds for the same message, and
what nats-py refuses is refused here (plus control characters in a subject)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

import pytest
from nats.aio.client import Client
from nats.errors import (
    BadHeaderError,
    BadSubjectError,
    BadTimeoutError,
    ConnectionClosedError,
    FlushTimeoutError,
)

from bridge import natspublish, natsread
from tests.fakenats import RecordingServer, recorded_client

NAME_ALPHABET = "Rb-Msg-Id_x.~!#$%&'*+^`|0123456789" + " \t:é\r\n\x00/@"
VALUE_ALPHABET = "abc XYZ-0123.:=/+é€ \t\r\n\x0b\u2028"


async def nats_py_frame(
    subject: str, payload: bytes, reply: str, headers: Mapping[str, str] | None
) -> bytes:
    """What nats-py itself hands to its connection for this publish (its own code, run)."""
    client = Client()
    sent: list[bytes] = []

    async def capture(command: bytes, priority: bool = False) -> None:
        sent.append(command)

    client._send_command = capture  # type: ignore[method-assign,assignment]
    client._flush_queue = None
    client._max_pending_size = 1 << 30  # unconnected: its reconnect buffer takes the frame
    await client.publish(
        subject, payload, reply=reply, headers=None if headers is None else dict(headers)
    )
    assert len(sent) == 1
    return sent[0]


def random_text(rng: random.Random, alphabet: str, longest: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))


async def test_random_messages_frame_as_nats_py_frames_them_or_are_refused_alike() -> None:
    rng = random.Random(20261206)
    verdicts = {"same": 0, "bad header": 0}
    for _ in range(3000):
        headers = None
        if rng.random() < 0.9:
            headers = {
                random_text(rng, NAME_ALPHABET, 12): random_text(rng, VALUE_ALPHABET, 40)
                for _ in range(rng.randint(0, 6))
            }
        payload = rng.randbytes(rng.randint(0, 64))
        reply = rng.choice(["", "_INBOX.abc.7", "rb.reply.é"])
        subject = rng.choice(["rb.in.docs.parse", "rb.in.é.x", "a"])
        try:
            expected = await nats_py_frame(subject, payload, reply, headers)
        except BadHeaderError:
            with pytest.raises(BadHeaderError):
                natspublish.frame(subject, payload, reply=reply, headers=headers)
            verdicts["bad header"] += 1
            continue
        assert natspublish.frame(subject, payload, reply=reply, headers=headers) == expected
        verdicts["same"] += 1
    # Both kinds of case occur often, so neither branch of the comparison is left untried.
    assert min(verdicts.values()) > 300, verdicts


async def test_the_headers_of_a_stored_request_frame_as_nats_py_frames_them() -> None:
    headers = {
        "Nats-Msg-Id": "e-0123456789abcdef",
        "Rb-Site": "plant-a",
        "Rb-Reply-Token": "v1." + "A" * 180,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        " X-Padded ": "  kept inside  ",
        "": "an empty name is left out",
        "X-Newlines": "one\r\ntwo\nthree\r",
    }
    for _ in range(2):  # the second time every plain name is one the module has seen
        expected = await nats_py_frame("rb.in.docs.parse", b"{}", "_INBOX.x.1", headers)
        assert (
            natspublish.frame("rb.in.docs.parse", b"{}", reply="_INBOX.x.1", headers=headers)
            == expected
        )
    assert b"X-Newlines: one  two three\r\n" in expected


@pytest.mark.parametrize(
    "subject",
    ["", "rb.in. x", "rb.in.x\r\nPUB evil 0", "rb\tin", "rb.in.\x00", "rb.in.\x7f", "rb.\x1b"],
)
def test_a_subject_or_reply_that_would_break_the_protocol_line_is_refused(subject: str) -> None:
    with pytest.raises(BadSubjectError):
        natspublish.frame(subject, b"x")
    if subject:
        with pytest.raises(BadSubjectError):
            natspublish.frame("rb.in.ok", b"x", reply=subject)


@pytest.mark.parametrize("name", ["X Y", "X:Y", "X\r\nPUB evil 0", "Ümlaut", "X\x00"])
def test_a_header_name_outside_the_token_characters_is_refused(name: str) -> None:
    with pytest.raises(BadHeaderError):
        natspublish.frame("rb.in.ok", b"x", headers={name: "v"})


def test_names_remembered_as_good_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(natspublish, "_GOOD_NAMES", set())
    monkeypatch.setattr(natspublish, "_GOOD_NAMES_LIMIT", 10)
    for number in range(50):
        natspublish.frame("rb.in.ok", b"x", headers={f"X-{number}": "v"})
    assert len(natspublish._GOOD_NAMES) == 10


async def test_flush_writes_what_is_buffered_before_its_ping() -> None:
    # nats-py's own flush writes its PING straight to the socket, ahead of what its flusher
    # task has not yet written: the server's PONG then confirmed nothing buffered before it.
    async with recorded_client() as (server, nc):
        before = len(server.received)
        await nc.subscribe("t.sub")
        await nc.publish("t.pub", b"one")
        await natspublish.publish_many(nc, [("t.many", b"two", {"A": "b"}, "")])
        await natspublish.flush(nc, timeout=5)
        wire = bytes(server.received[before:])
    ping = wire.index(b"PING\r\n")
    for command in (b"SUB t.sub ", b"PUB t.pub ", b"HPUB t.many "):
        assert 0 <= wire.find(command) < ping, (command, wire)


async def late_pong_then_message(server: RecordingServer, nc: Client, flushing: Any) -> bool:
    """Flush while the server holds its PONG (the flush times out), then the PONG and a message
    come: whether the message still reaches its subscription."""
    arrived = asyncio.Event()

    async def keep(_message: Any) -> None:
        arrived.set()

    await nc.subscribe("t.after", cb=keep)
    await natspublish.flush(nc, timeout=5)
    server.hold_pongs = True
    with pytest.raises(FlushTimeoutError):
        await flushing()
    server.hold_pongs = False
    server.release_pongs()
    server.send(b"MSG t.after " + server.sid("t.after") + b" 5\r\nhello\r\n")
    try:
        await asyncio.wait_for(arrived.wait(), 10)
    except TimeoutError:
        return False
    return nc.is_connected


async def test_a_flush_that_timed_out_leaves_nothing_its_late_pong_could_stop_the_reader_on() -> (
    None
):
    # nats-py cancels its flush's future on a timeout and leaves it in line; the late PONG then
    # set the cancelled future's result, and the exception ended the connection's reader.
    async with recorded_client() as (server, nc):
        assert await late_pong_then_message(server, nc, lambda: natspublish.flush(nc, timeout=0.5))


async def test_a_guarded_connection_survives_a_late_pong_to_nats_pys_own_flush() -> None:
    async with recorded_client() as (server, nc):
        natsread.guard(nc)
        assert await late_pong_then_message(server, nc, lambda: nc.flush(timeout=1))


async def test_flush_refuses_a_closed_connection_and_a_timeout_of_nothing() -> None:
    async with recorded_client() as (_, nc):
        with pytest.raises(BadTimeoutError):
            await natspublish.flush(nc, timeout=0)
        await nc.close()
        with pytest.raises(ConnectionClosedError):
            await natspublish.flush(nc)
