"""A whole bridge on this machine: edge NATS, cloud NATS, a cloud gateway, an edge bridge."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from nats.aio.client import Client
from nats.aio.msg import Msg

from bridge.cloud.app import CloudGateway
from bridge.edge.app import EdgeApp
from bridge.edge.config import EdgeSettings
from bridge.keys import FileKeyStore
from bridge.natsserver import NatsServer
from cloud_agent import CloudAgent, CloudRequest
from tests.conftest import POLICIES
from tests.link.helpers import TRUST_DOMAIN, Pki
from tests.runtime.helpers import cloud_settings


@dataclass
class World:
    root: Path
    pki: Pki
    edge_nats: NatsServer
    cloud_nats: NatsServer
    gateways: dict[str, CloudGateway] = field(default_factory=dict)
    edges: list[EdgeApp] = field(default_factory=list)

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    def edge_settings(
        self, *, destinations: dict[str, Any] | None = None, **overrides: Any
    ) -> EdgeSettings:
        if destinations is None:
            port = next(iter(self.gateways.values())).port
            destinations = {
                "cloud-eu": {"address": f"localhost:{port}"},
                "cloud-us": {"address": f"localhost:{port}"},
            }
        data: dict[str, Any] = {
            "site": "plant-a",
            "nats": {"url": self.edge_nats.url},
            "policy": {"path": self.root / "policy" / "claims.yaml", "watch_seconds": 0.2},
            "keys_dir": self.keys_dir,
            "audit": {"dir": self.root / "audit"},
            "destinations": destinations,
            "tls": {
                "cert": self.pki.root / "site-plant-a.pem",
                "key": self.pki.root / "site-plant-a.key",
                "ca": self.pki.ca_path,
            },
            "link": {"keepalive_seconds": 1.0},
            "http": "127.0.0.1:0",
            "grace_seconds": 2,
            "consumer": {"batch": 128},
        }
        data.update(overrides)
        return EdgeSettings(**data)

    async def start_gateway(self, name: str = "eu", **overrides: Any) -> CloudGateway:
        settings = cloud_settings(
            self.pki, self.cloud_nats.url, name=f"gateway-{name}", **overrides
        )
        gateway = CloudGateway(settings)
        await gateway.start()
        self.gateways[name] = gateway
        return gateway

    async def start_edge(self, **overrides: Any) -> EdgeApp:
        app = EdgeApp(self.edge_settings(**overrides))
        await app.start()
        self.edges.append(app)
        return app

    async def start_linked(self) -> tuple[CloudGateway, EdgeApp]:
        """A gateway and an edge bridge, the edge's link to it up."""
        gateway = await self.start_gateway()
        edge = await self.start_edge()
        await edge.links["cloud-eu"].wait_up(20)
        return gateway, edge

    def parser(self, seen: list[str] | None = None, nats_url: str | None = None) -> CloudAgent:
        """A cloud agent serving docs.parse (not started): it notes each request's id in
        ``seen`` and answers with the claim's id and claimant."""
        agent = CloudAgent("parser", nats_url=nats_url or self.cloud_nats.url)

        @agent.capability("docs.parse")
        async def parse(request: CloudRequest) -> dict[str, Any]:
            if seen is not None:
                seen.append(request.msg_id)
            payload = request.payload
            return {"claim_id": payload.get("claim_id"), "claimant": payload.get("claimant")}

        return agent

    def write_config(self, name: str, settings: Any) -> Path:
        """Settings as a YAML file, for a runtime started as its own process."""
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_none=True)))
        return path

    async def stop(self) -> None:
        for app in self.edges:
            await app.stop()
        for gateway in self.gateways.values():
            await gateway.stop()


async def queue_of(connection: Client, subject: str) -> asyncio.Queue[Msg]:
    """Subscribe to ``subject`` and return the queue its messages arrive in."""
    arrived: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(message: Msg) -> None:
        await arrived.put(message)

    await connection.subscribe(subject, cb=collect)
    return arrived


def make_world(root: Path, pki: Pki) -> World:
    keys = FileKeyStore(root / "keys")
    for name in ("pseudonyms", "correlation", "reply-tokens"):
        keys.create(name)
    (root / "policy").mkdir(parents=True)
    shutil.copy(POLICIES / "claims.yaml", root / "policy" / "claims.yaml")
    # Larger than the policy's 1 MiB limit, so the bridge (not NATS) is what refuses big payloads.
    edge_nats = NatsServer(root / "edge-nats", name="edge", extra_config="max_payload: 8388608")
    cloud_nats = NatsServer(root / "cloud-nats", name="cloud")
    edge_nats.start()
    cloud_nats.start()
    assert TRUST_DOMAIN
    return World(root, pki, edge_nats, cloud_nats)
