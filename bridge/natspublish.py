"""Messages framed for NATS here, and handed to the connection a batch at a time.

nats-py builds each message's header block with a regular-expression match, a strip and a
translate per header, copied through a bytearray: about 15 µs for the ten headers of a request
stored in ``RB_IN``, a fifth of the gateway's CPU per message. Here a header name is checked
once per process (names repeat), the values together, and the frame is one format. What goes
on the wire is byte for byte what nats-py sends for the same message (a test compares both
through a real server), and the same input is refused: a subject with whitespace or a control
character, a header name outside RFC 7230's token characters. As in nats-py, values are
stripped and a CR or LF in one becomes a space, so no value can end its line early.

The frames are appended to the connection's own outgoing buffer and its flusher is woken once
per batch, the way ``Client.publish`` does it; where a nats-py release no longer has what this
uses of it, every message goes through ``Client.publish`` instead (slower, the same bytes).

:func:`flush` is ``Client.flush`` with the buffer written first: nats-py writes a flush's PING
straight to the socket, ahead of the publishes and subscriptions still waiting in that buffer
for its flusher task, and the server answers PINGs in order, so the PONG confirmed the PING
alone (and a reply published just before a flush left after it, one wake later). A flush that
times out here also leaves nothing behind that its late PONG could trip over.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence

from nats.aio.client import Client
from nats.errors import (
    BadHeaderError,
    BadSubjectError,
    BadTimeoutError,
    ConnectionClosedError,
    ConnectionDrainingError,
    FlushTimeoutError,
    MaxPayloadError,
    OutboundBufferLimitError,
)

HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""RFC 7230 token characters: what nats-py (and this module) accept as a header name."""
# nats-py refuses whitespace and CR/LF in a subject; NUL and the other controls go too.
_BAD_SUBJECT = re.compile(r"[\x00-\x20\x7f]")
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_PING = b"PING\r\n"
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_LIMIT = 4096  # names come from agents too: remember a bounded number

RAW = all(hasattr(Client, name) for name in ("_send_command", "_flush_pending"))
"""Whether this nats-py takes frames into its buffer (else :func:`publish_many` publishes
each message through ``Client.publish``)."""

Message = tuple[str, bytes, Mapping[str, str] | None, str]
"""(subject, payload, headers or None, reply subject or "") of one message."""


def check_subject(subject: str) -> None:
    """Raises nats-py's ``BadSubjectError`` for an empty subject or one with whitespace or a
    control character (which would break the protocol line)."""
    if not subject or _BAD_SUBJECT.search(subject):
        raise BadSubjectError


def _name(name: str) -> str:
    """The header name as sent (stripped; "" to leave the header out, as nats-py does)."""
    stripped = name.strip()
    if stripped and not HEADER_NAME.fullmatch(stripped):
        raise BadHeaderError(stripped)
    if stripped and stripped == name and len(_GOOD_NAMES) < _GOOD_NAMES_LIMIT:
        _GOOD_NAMES.add(name)
    return stripped


def header_block(headers: Mapping[str, str]) -> bytes:
    """``NATS/1.0`` and one ``Name: value`` line per header, as nats-py writes it."""
    lines = []
    for name, value in headers.items():
        if name not in _GOOD_NAMES:
            name = _name(name)
            if not name:
                continue
        lines.append(f"{name}: {value.strip()}\r\n")
    text = "".join(lines)
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        # A value holds a CR or LF (after stripping): each becomes a space (rare).
        text = "".join(line[:-2].translate(_NEWLINES) + "\r\n" for line in lines)
    return f"NATS/1.0\r\n{text}\r\n".encode()


def frame(
    subject: str, payload: bytes, *, reply: str = "", headers: Mapping[str, str] | None = None
) -> bytes:
    """One message as the protocol line(s) nats-py would write for it (HPUB with headers)."""
    check_subject(subject)
    if reply:
        check_subject(reply)
    if headers is None:
        return b"PUB %b %b %d\r\n%b\r\n" % (
            subject.encode(),
            reply.encode(),
            len(payload),
            payload,
        )
    block = header_block(headers)
    return b"HPUB %b %b %d %d\r\n%b%b\r\n" % (
        subject.encode(),
        reply.encode(),
        len(block),
        len(block) + len(payload),
        block,
        payload,
    )


async def flush(nc: Client, timeout: float = 10) -> None:
    """Write what ``nc`` has buffered and a PING, in one write, and wait for the PONG: once
    this returns, the server has read every publish and subscription made before it.

    Raises nats-py's ``FlushTimeoutError`` when no PONG comes within ``timeout`` seconds (the
    PONG may still come later, and is then passed over) and ``ConnectionClosedError`` on a
    closed connection. Where the connection is not up (reconnecting) or this nats-py lacks what
    this uses, ``Client.flush`` answers instead.
    """
    if timeout <= 0:
        raise BadTimeoutError
    if nc.is_closed:
        raise ConnectionClosedError
    pending = getattr(nc, "_pending", None)
    pongs = getattr(nc, "_pongs", None)
    transport = getattr(nc, "_transport", None)
    live = all(
        task is not None and not task.done()
        for task in (getattr(nc, "_flusher_task", None), getattr(nc, "_reading_task", None))
    )
    if pending is None or pongs is None or transport is None or not live or not nc.is_connected:
        await nc.flush(int(max(1, timeout)))
        return
    answered = asyncio.get_running_loop().create_future()
    pongs.append(answered)  # answered in order: the PONG to this PING sets it
    # What the flusher would write on its next turn, written now and ahead of the PING.
    nc._pending = []
    nc._pending_data_size = 0
    transport.writelines([*pending, _PING])

    async def confirmed() -> None:
        await transport.drain()
        # Shielded: on a timeout the future stays pending, so its late PONG sets it harmlessly.
        await asyncio.shield(answered)

    try:
        await asyncio.wait_for(confirmed(), timeout)
    except TimeoutError:
        raise FlushTimeoutError from None


async def publish_many(nc: Client, messages: Sequence[Message]) -> None:
    """Publish every (subject, payload, headers, reply) with one wake of the connection's
    flusher.

    Raises what ``Client.publish`` raises for the same message (a bad subject or header name,
    a payload over the server's limit, a closed or draining connection, a full reconnect
    buffer). Every message is framed before the first is handed over, so bad input sends
    nothing; a connection failing part-way leaves the rest unsent, as with publish.
    """
    limit = nc.max_payload
    framed: list[bytes] = []
    size = 0
    for subject, payload, headers, reply in messages:
        if len(payload) > limit:
            raise MaxPayloadError
        framed.append(frame(subject, payload, reply=reply, headers=headers))
        size += len(payload)
    if not (RAW and hasattr(nc, "_flush_queue") and hasattr(nc, "_max_pending_size")):
        for subject, payload, headers, reply in messages:
            await nc.publish(
                subject, payload, reply=reply, headers=None if headers is None else dict(headers)
            )
        return
    if nc.is_closed:
        raise ConnectionClosedError
    if nc.is_draining_pubs:
        raise ConnectionDrainingError
    if not nc.is_connected:
        room = nc._max_pending_size
        if room <= 0 or nc.pending_data_size + sum(map(len, framed)) > room:
            raise OutboundBufferLimitError
    nc.stats["out_msgs"] += len(framed)
    nc.stats["out_bytes"] += size
    for data in framed:
        await nc._send_command(data)
    queue = nc._flush_queue
    if queue is not None and queue.empty():
        await nc._flush_pending()
