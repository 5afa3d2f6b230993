"""A stand-in for a NATS server that speaks just enough of the protocol for a client to connect,
keeps what the client wrote, in order, and answers PINGs when told to: for tests of what goes on
the wire and in what order, which a real server does not show."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import nats
from nats.aio.client import Client


class RecordingServer:
    INFO = (
        b'INFO {"server_id":"rec","version":"2.10.0","proto":1,"headers":true,'
        b'"max_payload":1048576}\r\n'
    )

    def __init__(self) -> None:
        self.received = bytearray()
        #: While True, PINGs are counted in ``held`` and not answered.
        self.hold_pongs = False
        self.held = 0
        self.server: asyncio.Server | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"nats://127.0.0.1:{port}"

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    def sid(self, subject: str) -> bytes:
        """The subscription id the client gave ``subject``."""
        found = re.search(rb"SUB " + re.escape(subject.encode()) + rb" +(\d+)\r\n", self.received)
        assert found is not None, f"no SUB {subject} yet"
        return found.group(1)

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    def release_pongs(self) -> None:
        """Answer the PINGs held so far."""
        self.send(b"PONG\r\n" * self.held)
        self.held = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        writer.write(self.INFO)
        pings = 0
        while data := await reader.read(1 << 16):
            self.received.extend(data)
            for _ in range(self.received.count(b"PING\r\n") - pings):
                pings += 1
                if self.hold_pongs:
                    self.held += 1
                else:
                    writer.write(b"PONG\r\n")
        writer.close()


@contextlib.asynccontextmanager
async def recorded_client() -> AsyncIterator[tuple[RecordingServer, Client]]:
    """A recording server and a client connected to it (no reconnects, no pings of its own)."""
    server = RecordingServer()
    async with server as url:
        nc = await nats.connect(url, allow_reconnect=False, ping_interval=3600)
        try:
            yield server, nc
        finally:
            await nc.close()  # (nothing to do if the test closed it)
