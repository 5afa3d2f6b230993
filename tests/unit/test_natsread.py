"""Header blocks read by the bridge give exactly what nats-py's own parse gives (its code, run on
the same bytes), including the blocks no NATS client would write; inline statuses are told
apart as nats-py tells them."""

from __future__ import annotations

import random

import pytest
from nats.aio.client import Client

from bridge import natsread

# Bytes a raw-protocol sender can put in a header line (CR LF ends the line, so not together).
NAME_BYTES = b"Rb-Msg-Id_x.~!#$%&'*+^`|0123456789 \t\x0b\x0c\x1c\x1f\x00:\xc3\xa9\xff\r\n"
VALUE_BYTES = b"abc XYZ-0123.:=/+ \t\x0b\x00\xc3\xa9\xe2\x82\xac\xff\xfe\r\n"


async def nats_py_headers(block: bytes) -> dict[str, str] | None:
    """nats-py's reading of a header block (the code its reader runs for every message)."""
    return await Client()._process_headers(block)


def random_bytes(rng: random.Random, alphabet: bytes, longest: int) -> bytes:
    return bytes(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))


def random_block(rng: random.Random) -> bytes:
    lines: list[bytes] = []
    for _ in range(rng.randint(0, 8)):
        name = random_bytes(rng, NAME_BYTES, 10)
        if rng.random() < 0.6:  # most names are ordinary ones
            name = rng.choice([b"Rb-Class", b"Nats-Msg-Id", b"traceparent", b"X-1"])
        if lines and rng.random() < 0.2:  # a name seen before, perhaps in another case
            name = rng.choice(lines).partition(b":")[0].swapcase()
        separator = rng.choice([b": ", b":", b":  ", b" : ", b""])
        line = name + separator + random_bytes(rng, VALUE_BYTES, 24)
        lines.append(line.replace(b"\r\n", b"\r"))
    end = rng.choice([b"\r\n\r\n", b"\r\n", b""])
    return b"NATS/1.0\r\n" + b"\r\n".join(lines) + (end if lines else b"\r\n")


async def test_random_blocks_read_as_nats_py_reads_them() -> None:
    rng = random.Random(20261207)
    kinds = {"dropped a line": 0, "kept every line": 0, "empty": 0}
    for _ in range(4000):
        block = random_block(rng)
        expected = await nats_py_headers(block)
        assert natsread.parse_headers(block) == expected, block
        assert natsread.parse_headers(block) == expected, block  # names now remembered
        assert not natsread.has_status(block)
        lines = [line for line in block[10:].split(b"\r\n") if line]
        if not expected:
            kinds["empty"] += 1
        elif len(expected) < len(lines):
            kinds["dropped a line"] += 1
        else:
            kinds["kept every line"] += 1
    assert min(kinds.values()) > 300, kinds  # every kind of block was tried


@pytest.mark.parametrize(
    "block",
    [
        b"NATS/1.0\r\n",
        b"NATS/1.0\r\n\r\n",
        b"NATS/1.0\r\nA: b\r\n\r\n",
        b"NATS/1.0\r\nA:b",  # no terminator
        b"NATS/1.0\r\n\xff\xfe: v\r\n\r\n",  # a name that is not ASCII
        b"NATS/1.0\r\nA b: v\r\nA\x1cb: w\r\n\r\n",  # whitespace inside a name
    ],
)
async def test_edge_cases_read_as_nats_py_reads_them(block: bytes) -> None:
    assert natsread.parse_headers(block) == await nats_py_headers(block)


@pytest.mark.parametrize(
    ("block", "status"),
    [
        (b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\n\r\n", "100"),
        (b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 5\r\n\r\n", "408"),
        (b"NATS/1.0 404 No Messages\r\n\r\n", "404"),
        (b"NATS/1.0 503\r\n\r\n", "503"),
        (b"NATS/1.0 abc\r\n\r\n", None),  # a status line, but no code nats-py would read
    ],
)
async def test_inline_statuses_are_told_apart(block: bytes, status: str | None) -> None:
    assert natsread.has_status(block)
    assert natsread.status_of(block) == status
    assert ((await nats_py_headers(block)) or {}).get("Status") == status


def test_the_names_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(natsread, "_NAMES", {})
    for number in range(natsread._NAMES_LIMIT + 100):
        assert natsread.parse_headers(b"NATS/1.0\r\nN%d: v\r\n\r\n" % number) == {f"N{number}": "v"}
    assert len(natsread._NAMES) == natsread._NAMES_LIMIT
