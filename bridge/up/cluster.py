"""Three nats-server processes on loopback as one JetStream cluster (routes on ports chosen at
start): the two sides of ``rbridge up --ha``, and the tests of replicated streams."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import nats
from nats.js.errors import APIError, ServiceUnavailableError

from bridge.natsserver import NatsServer
from bridge.up.ports import free_port


class Cluster:
    def __init__(
        self, root: Path, size: int = 3, name: str = "edge", *, die_with_parent: bool = False
    ) -> None:
        ports = [free_port() for _ in range(size)]
        self.servers: list[NatsServer] = []
        for index, port in enumerate(ports):
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in ports if p != port)
            cluster = (
                f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{port}\n  routes: [{routes}]\n}}"
            )
            self.servers.append(
                NatsServer(
                    root / f"{name}-{index}", name=f"{name}-{index}", extra_config=cluster,
                    die_with_parent=die_with_parent,
                )
            )  # fmt: skip

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def url(self) -> str:
        """Every member, comma-separated, as the agent SDKs take a cluster."""
        return ",".join(self.urls)

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

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def kill(self) -> None:
        for server in self.servers:
            server.kill()
