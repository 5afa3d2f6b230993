"""Three nats-server processes on loopback as one JetStream cluster (routes on ports chosen at
start), for tests of replicated streams and of losing a server."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import nats
from nats.js.errors import APIError, ServiceUnavailableError

from bridge.natsserver import NatsServer
from bridge.up.stack import free_port


class Cluster:
    def __init__(self, root: Path, size: int = 3, name: str = "edge") -> None:
        ports = [free_port() for _ in range(size)]
        self.servers: list[NatsServer] = []
        for index, port in enumerate(ports):
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in ports if p != port)
            cluster = (
                f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{port}\n  routes: [{routes}]\n}}"
            )
            self.servers.append(
                NatsServer(root / f"{name}-{index}", name=f"{name}-{index}", extra_config=cluster)
            )

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def by_name(self, name: str) -> NatsServer:
        return next(server for server in self.servers if server.name == name)

    async def start(self, timeout: float = 60) -> None:
        for server in self.servers:
            await asyncio.to_thread(server.start)
        await self.wait_for_jetstream(timeout)

    async def wait_for_jetstream(self, timeout: float = 60) -> None:
        """Until the cluster has elected its JetStream meta leader (it answers account info)."""
        connection = await nats.connect(servers=self.urls)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    with contextlib.suppress(
                        APIError, ServiceUnavailableError, TimeoutError, nats.errors.TimeoutError
                    ):
                        await connection.jetstream().account_info()
                        return
                    await asyncio.sleep(0.2)
        finally:
            await connection.close()

    def kill(self) -> None:
        for server in self.servers:
            server.kill()
