"""Messages of chosen subscriptions read straight off the wire, and NATS header blocks parsed.

nats-py hands every message over as a message object with parsed headers, through the
subscription's queue and task, into a coroutine callback: for the bridge's busiest
subscriptions (its PubAcks, the messages of its pull consumers) about as much CPU as the work
done with each message. :func:`route` gives the messages of one subscription to a plain
function as the connection's reader parses them (subject, reply subject, payload and the raw
header block, all bytes); the function returns False for any it leaves to nats-py (which then
delivers it to the subscription's callback as usual). Every other subscription is served by
nats-py as before.

The hook wraps a private method of nats-py's client, on that connection only, and routes by
subscription id (which stays the same across reconnects). Where a nats-py release no longer has
that method, :data:`HOOK` is False and callers subscribe with an ordinary callback instead.

The same hook guards the reader: see :func:`guard`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

Route = Callable[[bytes, bytes, bytes, bytes], bool]
"""Called with (subject, reply, payload, header block) as read; returns whether it took the
message (False: nats-py delivers it to the subscription's callback)."""

HOOK = hasattr(Client, "_process_msg")
"""Whether this nats-py's reader can hand messages over directly (else through callbacks)."""

PONGS = hasattr(Client, "_process_pong")
"""Whether this nats-py answers flushes the way :func:`guard` expects (a list of futures)."""
_PONGS = "_rbridge_pongs"

_ROUTES = "_rbridge_routes"
_CRLF = b"\r\n"
_NOT_ASCII = re.compile(rb"[\x80-\xff]")
_VERSION_LINE = len(b"NATS/1.0")


def _routes(nc: Client) -> dict[int, Route]:
    """The connection's routes by subscription id, hooking its reader the first time."""
    routes: dict[int, Route] | None = nc.__dict__.get(_ROUTES)
    if routes is None:
        routes = {}
        original = nc._process_msg
        stats = nc.stats

        async def process(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
        ) -> Any:
            if not (subject.isascii() and reply.isascii()):
                subject, reply = _readable(subject), _readable(reply)
            if headers and not headers.isascii() and has_status(headers):
                # nats-py reads a block with an inline status line at fixed byte offsets and
                # decodes the parts strictly: any byte beyond ASCII there can stop the reader.
                # The server's own statuses are ASCII; a publisher's imitation is made so.
                headers = _NOT_ASCII.sub(b"?", headers)
            taken = routes.get(sid)
            if taken is not None and taken(subject, reply, data, headers):
                stats["in_msgs"] += 1
                stats["in_bytes"] += len(data)
                return None
            return await original(sid, subject, reply, data, headers)

        nc._process_msg = process  # type: ignore[method-assign]
        setattr(nc, _ROUTES, routes)
    return routes


def _readable(raw: bytes) -> bytes:
    """``raw`` as UTF-8, each byte that is not read as U+FFFD (valid UTF-8 comes back as it is)."""
    return raw.decode("utf-8", "replace").encode()


def guard(nc: Client) -> None:
    """Hook ``nc``'s reader (once), so that no message can stop it.

    The server passes a subject, reply subject or header block of any bytes. nats-py decodes
    the subjects as strict UTF-8, and a header block that starts with an inline status line at
    fixed byte offsets, strictly too; the exception it raises for bytes that are not UTF-8 ends
    the connection's reader for good: the connection stays up and reads nothing more, and a
    stored message is redelivered to whoever restarts. Behind the guard a subject's bad bytes
    read as U+FFFD (which the policy refuses in a subject), and a status line's block is ASCII
    (each other byte a ``?``).

    A PONG that comes after its flush gave up is passed over too. nats-py cancels the flush's
    future on a timeout but leaves it in line, and setting the result of the cancelled future
    when the PONG comes raises in the reader, which then ends the same way.

    Every connection the bridge and the SDKs make is guarded
    (:func:`bridge.natsconnect.connect`); without :data:`HOOK` only the PONG part is, and
    without :data:`PONGS` nothing.
    """
    if HOOK:
        _routes(nc)
    if PONGS and _PONGS not in nc.__dict__:
        original = nc._process_pong

        async def process_pong() -> None:
            waiting = nc._pongs
            if waiting and waiting[0].done():  # its flush timed out: nothing to tell it
                waiting.pop(0)
                nc._pongs_received += 1
                nc._pings_outstanding = 0
                return
            await original()

        nc._process_pong = process_pong  # type: ignore[method-assign]
        setattr(nc, _PONGS, True)


def route(nc: Client, sid: int, taken: Route) -> None:
    """Give the messages of subscription ``sid`` on ``nc`` to ``taken`` (only when :data:`HOOK`)."""
    _routes(nc)[sid] = taken


def unroute(nc: Client, sid: int) -> None:
    routes: dict[int, Route] | None = nc.__dict__.get(_ROUTES)
    if routes is not None:
        routes.pop(sid, None)


def routed(nc: Client) -> bool:
    """Whether ``nc``'s reader has been hooked (for tests: which path a subscription takes)."""
    return _ROUTES in nc.__dict__


def has_status(block: bytes) -> bool:
    """Whether a header block starts with an inline status (``NATS/1.0 408 Request Timeout``:
    JetStream's heartbeats and the ends of pull requests), which nats-py reads into headers."""
    return block[_VERSION_LINE : _VERSION_LINE + 1] == b" "


def status_of(block: bytes) -> str | None:
    """The inline status of a header block (``NATS/1.0 503``), as nats-py reads it."""
    if block and has_status(block):
        code = block[_VERSION_LINE + 1 : _VERSION_LINE + 4]
        if code.isdigit():
            return code.decode()
    return None


# ASCII whitespace as str.isspace sees it (nats-py drops a header whose name holds any).
_SPACE = re.compile(rb"[\t\n\x0b\x0c\r\x1c-\x1f ]")
_NAMES: dict[bytes, str | None] = {}  # a name as read -> as kept (None: left out)
_NAMES_LIMIT = 4096  # names come from agents too: remember a bounded number


def _name(raw: bytes) -> str | None:
    """A header name as read, stripped and decoded; None where nats-py leaves the header out."""
    name = raw.strip()
    if not name.isascii() or _SPACE.search(name):
        return None
    return name.decode()


def parse_headers(block: bytes) -> dict[str, str] | None:
    """The headers of a block without an inline status, exactly as nats-py parses them.

    ``Name: value`` per line after ``NATS/1.0``: the name and the value stripped of ASCII
    whitespace, a line without a colon or a name that is not ASCII or holds whitespace left
    out, the value decoded as UTF-8 (an invalid byte becomes U+FFFD), the last of two lines of
    one name kept. None where no header is left, as nats-py gives.
    """
    if len(block) <= _VERSION_LINE + 2:
        return None
    headers: dict[str, str] = {}
    names = _NAMES
    for line in block[_VERSION_LINE + 2 :].split(_CRLF):
        raw, colon, value = line.partition(b":")
        if not colon:
            continue
        try:
            name = names[raw]
        except KeyError:
            name = _name(raw)
            if len(names) < _NAMES_LIMIT:
                names[raw] = name
        if name is not None:
            headers[name] = value.strip().decode("utf-8", "replace")
    return headers or None
