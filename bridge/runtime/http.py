"""A very small HTTP endpoint for /metrics, /healthz and /readyz (GET only, loopback by default)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Readiness = Callable[[], list[str]]
"""Returns what is not ready yet (empty: ready)."""


class StatusServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Readiness,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        notes: Readiness | None = None,
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        # Things an operator should know that do not make the process unready.
        self.notes = notes
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @classmethod
    def at(
        cls,
        address: str,
        registry: CollectorRegistry,
        readiness: Readiness,
        notes: Readiness | None = None,
    ) -> StatusServer:
        """A status server for a runtime's ``http`` setting (``host:port``, validated)."""
        host, _, port = address.rpartition(":")
        return cls(registry, readiness, host=host, port=int(port), notes=notes)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            # Drain the headers; the body of a GET is empty.
            while (line := await asyncio.wait_for(reader.readline(), 5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                if len(line) > 8192:
                    break
            parts = request.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            status, content_type, body = self._route(method, path)
            head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            missing = self.readiness()
            if missing:
                return (
                    "503 Service Unavailable",
                    "text/plain",
                    ("not ready: " + "; ".join(missing) + "\n").encode(),
                )
            notes = self.notes() if self.notes is not None else []
            body = "ready\n" + "".join(f"note: {note}\n" for note in notes)
            return "200 OK", "text/plain", body.encode()
        return "404 Not Found", "text/plain", b"not found\n"
