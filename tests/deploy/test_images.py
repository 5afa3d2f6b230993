"""The cloud images, run for real over the podman socket with testcontainers, end to end with an
edge bridge on this host: a claim goes from an on-prem agent through the bridge to the gateway
container, the cloud agents' container parses and scores it, and the answer comes back named."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.edge.app import EdgeApp
from bridge.edge.config import EdgeSettings
from bridge.keys import FileKeyStore
from bridge.link.pki import write_dev_pki
from bridge.natsserver import NatsServer
from bridge.up.ports import free_port
from edge_agent import Agent
from edge_agent.examples.claims import fraud_agent, intake_agent
from edge_agent.examples.samples import claim
from tests.deploy.guide import Guide
from tests.deploy.podman import ROOT, environment, require_containers, run

# Builds (debootstrap, wheels, images, packages) happen in the first test: allow for them.
pytestmark = [pytest.mark.slow, pytest.mark.deploy, pytest.mark.timeout(1800)]
VERSION = "0.1.0"


@pytest.fixture(scope="module")
def images() -> None:
    require_containers()
    run("deploy/cloud/build-images", timeout=1800)


@pytest.fixture(scope="module")
def podman_socket(images: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``podman system service`` on a private socket."""
    path = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{path}"], env=environment()
    )
    try:
        for _ in range(100):
            if path.exists():
                break
            time.sleep(0.1)
        yield f"unix://{path}"
    finally:
        service.terminate()
        service.wait(10)


@pytest.fixture
def docker_env(podman_socket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", podman_socket)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")


def container(image: str) -> Any:
    """A container of one of our images, on the host's network, with a read-only root."""
    from testcontainers.core.container import DockerContainer

    name = f"rbridge-{image}-{uuid.uuid4().hex[:6]}"
    return (
        DockerContainer(f"localhost/rbridge-{image}:{VERSION}")
        .with_name(name)
        .with_kwargs(network_mode="host", read_only=True)
    )


def healthy(name: str) -> bool:
    """The image's own HEALTHCHECK, run by podman."""
    return run("podman", "healthcheck", "run", name, check=False).returncode == 0


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[tuple[NatsServer, Path]]:
    nats_server = NatsServer(tmp_path / "edge-nats", name="edge")
    nats_server.start()
    yield nats_server, tmp_path
    nats_server.kill()


async def test_the_images_serve_a_site_end_to_end(
    docker_env: None, edge: tuple[NatsServer, Path]
) -> None:
    edge_nats, work = edge
    pki = work / "pki"
    write_dev_pki(pki, ["plant-a"])
    tls = work / "tls"  # the mounted secret: what Kubernetes would project, readable by uid 10001
    tls.mkdir()
    for source, target in (
        ("gateway.pem", "tls.crt"),
        ("gateway.key", "tls.key"),
        ("ca.pem", "ca.crt"),
    ):
        shutil.copy(pki / source, tls / target)
        (tls / target).chmod(0o644)
    nats_port, link, http, health = (free_port() for _ in range(4))
    cloud_nats = (
        container("nats")
        .with_command(
            f"--jetstream --store_dir /data -a 127.0.0.1 -p {nats_port} --http_port {free_port()}"
        )
        .with_tmpfs_mount("/data")
    )
    gateway = (
        container("gateway")
        .with_envs(
            RBRIDGE_LISTEN=f"127.0.0.1:{link}",
            RBRIDGE_HTTP=f"127.0.0.1:{http}",
            RBRIDGE_HEALTH_LISTEN=f"127.0.0.1:{health}",
            RBRIDGE_NATS__URL=f"nats://127.0.0.1:{nats_port}",
            RBRIDGE_SITES='{"plant-a": {"capabilities": ["docs.>", "claims.>"]}}',
        )
        .with_volume_mapping(str(tls), "/etc/rbridge/tls", "ro")
    )
    agents = container("agents").with_env("RBRIDGE_AGENT_NATS_URL", f"nats://127.0.0.1:{nats_port}")
    started = []
    try:
        for part in (cloud_nats, gateway, agents):
            part.start()
            started.append(part)
        gateway_name = gateway.get_wrapped_container().name
        # --- health reports serving: the image's HEALTHCHECK and gRPC health.
        for _ in range(100):
            if healthy(gateway_name):
                break
            await asyncio.sleep(0.3)
        else:
            raise AssertionError(gateway.get_logs())
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{health}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined]
            answer = await check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        inspect = run(
            "podman",
            "inspect",
            "--format",
            "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}",
            gateway_name,
        )
        assert inspect.stdout.split() == ["10001:10001", "true"]

        # --- an edge bridge on this host, with the claims policy, to the gateway container.
        answer, document = await claim_through(
            edge_nats, work, pki=pki, address=f"localhost:{link}"
        )
        assert answer["claimant"]["name"] == document["claimant"]["name"]
        assert answer["fields"]["amount"] == document["incident"]["amount_claimed"]
        assert answer["triage"]["route"]
        logs = b"".join(gateway.get_logs()).decode(errors="replace")
        assert document["claimant"]["name"] not in logs
        assert document["claimant"]["ssn"] not in logs
    finally:
        for part in reversed(started):
            part.stop()


async def claim_through(
    edge_nats: NatsServer, work: Path, *, pki: Path, address: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An edge bridge on this host (the claims policy, the site certificate in ``pki``) sends a
    claim to the gateway at ``address``; the answer and the claim."""
    keys = FileKeyStore(work / "keys")
    for name in ("pseudonyms", "correlation", "reply-tokens"):
        if not list((work / "keys").glob(f"{name}.v*.key")):
            keys.create(name)
    app = EdgeApp(
        EdgeSettings(
            site="plant-a",
            nats={"url": edge_nats.url},
            policy={"path": ROOT / "policies" / "claims.yaml"},
            keys_dir=work / "keys",
            audit={"dir": work / "audit"},
            destinations={name: {"address": address} for name in ("cloud-eu", "cloud-us")},
            tls={
                "cert": pki / "site-plant-a.pem",
                "key": pki / "site-plant-a.key",
                "ca": pki / "ca.pem",
            },
            http="127.0.0.1:0",
        )
    )
    await app.start()
    agents_here = [
        fraud_agent(edge_nats.url),
        intake_agent(edge_nats.url),
        Agent("desk", nats_url=edge_nats.url),
    ]
    for agent in agents_here:
        await agent.start()
    try:
        await app.links["cloud-eu"].wait_up(20)
        document = claim(7, random.Random(7))
        answer = await agents_here[-1].ask("claims.intake", document, timeout=60)
        return answer, document
    finally:
        for agent in agents_here:
            await agent.stop()
        await app.stop()


async def test_the_compose_file_runs_on_a_stock_podman_as_the_guide_says(
    images: None, edge: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    """The guide's compose steps, word for word, with podman-compose: the certificates go in
    without the CA key, the three containers come up without container DNS, and a claim from an
    edge bridge on this host is answered by the agents' container."""
    edge_nats, work = edge
    home = tmp_path / "home"
    home.mkdir()
    project = tmp_path / "checkout"  # where the guide's relative paths point
    (project / "deploy" / "cloud").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "cloud" / "compose.yaml", project / "deploy" / "cloud")
    link, status = free_port(), free_port()
    name = f"rbridge-compose-{uuid.uuid4().hex[:6]}"
    guide = Guide(
        workdir=str(project),
        environment={
            **environment(),
            "HOME": str(home),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "COMPOSE_PROJECT_NAME": name,
            "RBRIDGE_LINK_PORT": str(link),
            "RBRIDGE_STATUS_PORT": str(status),
        },
    )
    guide.run("compose-certificates")
    tls = project / "deploy" / "cloud" / "tls"
    assert sorted(path.name for path in tls.iterdir()) == [
        "ca.pem", "crl.pem", "gateway.key", "gateway.pem",
    ]  # fmt: skip
    assert (tls / "gateway.key").stat().st_uid == 10001
    ca = home / "rbridge-ca"
    try:
        guide.run("compose-up", timeout=300)
        ready = ""
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{status}/readyz", timeout=2) as r:
                    ready = r.read().decode()
                    break
            except OSError:
                await asyncio.sleep(0.3)
        assert ready.startswith("ready"), run("podman", "logs", f"{name}_gateway_1").stderr
        # No container holds the CA key; NATS is not published.
        for service in ("nats", "gateway", "agents"):
            mounts = run(
                "podman", "inspect", "--format", "{{range .Mounts}}{{.Source}} {{end}}",
                f"{name}_{service}_1",
            ).stdout  # fmt: skip
            assert str(ca) not in mounts
        listing = run("podman", "exec", f"{name}_gateway_1", "ls", "/etc/rbridge/tls").stdout
        assert "ca.key" not in listing.split()
        published = run("podman", "port", f"{name}_nats_1").stdout
        assert "4222" not in published, published
        assert str(link) in published, published

        # --- an edge bridge on this host, with the guide's trial certificates, to the gateway.
        answer, document = await claim_through(edge_nats, work, pki=ca, address=f"localhost:{link}")
        assert answer["claimant"]["name"] == document["claimant"]["name"]
        assert answer["triage"]["route"]
    finally:
        guide.run("compose-down", check=False, timeout=300)
        run("podman", "volume", "rm", "-f", f"{name}_nats-data", check=False)
    assert run("podman", "ps", "-a", "--filter", f"name={name}", "-q").stdout.strip() == ""
