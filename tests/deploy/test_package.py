"""The on-prem package, installed and run for real: a Debian container with systemd as PID 1.

Build the .deb (and a newer one, to upgrade to), install it, configure it as an operator would
(site certificate, signed policy bundle, gateway address), start the NATS and bridge units, see
them active with the hardening in effect, send a claim through to a gateway on this host and get
the reply, change the policy and reload, upgrade, remove, purge.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli.main import main as rbridge
from bridge.cloud.app import CloudGateway
from bridge.cloud.config import CloudSettings
from bridge.link.pki import DEFAULT_TRUST_DOMAIN, write_dev_pki
from bridge.natsserver import NatsServer
from cloud_agent import CloudAgent, CloudRequest
from cloud_agent.examples.claims import claims_agents
from edge_agent import Agent, Denied
from edge_agent.examples.samples import claim
from tests.deploy.podman import ROOT, Container, require_containers, run

# Builds (debootstrap, wheels, images, packages) happen in the first test: allow for them.
pytestmark = [pytest.mark.slow, pytest.mark.deploy, pytest.mark.timeout(1800)]
UPGRADE_VERSION = "0.1.1"
# The container shares this host's network; its NATS listens on loopback port 4222.
ONPREM_NATS = "nats://127.0.0.1:4222"


@pytest.fixture(scope="module")
def packages() -> tuple[Path, Path]:
    require_containers()
    run("deploy/package/build", timeout=900)
    run("env", f"RBRIDGE_PACKAGE_VERSION={UPGRADE_VERSION}", "deploy/package/build", timeout=900)
    run("deploy/package/systemd-image", timeout=900)
    return (
        ROOT / "dist" / "rbridge_0.1.0-1_amd64.deb",
        ROOT / "dist" / f"rbridge_{UPGRADE_VERSION}-1_amd64.deb",
    )


@pytest.fixture
def machine(packages: tuple[Path, Path]) -> Iterator[Container]:
    name = f"rbridge-onprem-{uuid.uuid4().hex[:8]}"
    run("podman", "run", "-d", "--name", name, "--privileged", "--systemd=always",
        "--network", "host", "localhost/rbridge-systemd:bookworm")  # fmt: skip
    container = Container(name)
    try:
        for _ in range(100):
            state = container.sh("systemctl is-system-running || true").strip()
            if state in ("running", "degraded"):
                break
        yield container
    finally:
        container.remove()


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[CloudGateway, NatsServer, Path]]:
    pki = tmp_path / "pki"
    write_dev_pki(pki, ["plant-a"])
    nats_server = NatsServer(tmp_path / "cloud-nats", name="cloud")
    nats_server.start()
    gateway = CloudGateway(
        CloudSettings(
            listen="127.0.0.1:0",
            http="127.0.0.1:0",
            trust_domain=DEFAULT_TRUST_DOMAIN,
            tls={"cert": pki / "gateway.pem", "key": pki / "gateway.key", "ca": pki / "ca.pem"},
            sites={"plant-a": {"capabilities": ["docs.>", "claims.>"]}},
            nats={"url": nats_server.url},
        )
    )
    await gateway.start()
    try:
        yield gateway, nats_server, pki
    finally:
        await gateway.stop()
        nats_server.kill()


def policy_bundle(tmp_path: Path, signing: Path, revision: int, *, summaries: bool) -> Path:
    """The shipped claims policy, signed; with ``summaries``, claim summaries may leave too."""
    text = (ROOT / "policies" / "claims.yaml").read_text()
    if summaries:
        text = text.replace(
            "  rules:\n",
            "  rules:\n    - name: claim-summaries-to-eu\n      match: {subjects: [claims.summary]}\n"
            "      decision: allow\n      destinations: [cloud-eu]\n"
            "      transform: [{path: $.claimant, action: drop}, {path: $.notes, action: drop}]\n",
            1,
        )
    source = tmp_path / f"policy-r{revision}" / "claims.yaml"
    source.parent.mkdir()
    source.write_text(text)
    bundle = tmp_path / f"policy-r{revision}.bundle"
    assert rbridge(["policy", "sign", "--key", str(signing / "policy-signing.key"),
                    "--revision", str(revision), "--out", str(bundle), str(source)]) == 0  # fmt: skip
    return bundle


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in:\n{text}"
    return match.group(1)


def status_of(machine: Container, unit: str) -> str:
    return machine.sh(f"systemctl is-active {unit} || true").strip()


async def wait_active(machine: Container, unit: str) -> None:
    for _ in range(150):
        state = await asyncio.to_thread(status_of, machine, unit)
        if state == "active":
            return
        if state == "failed":
            break
        await asyncio.sleep(0.2)
    journal = machine.sh(f"journalctl -u {unit} --no-pager | tail -30", check=False)
    raise AssertionError(f"{unit} is {state}:\n{journal}")


async def ask_until(agent: Agent, capability: str, document: dict[str, object]) -> object:
    for _ in range(30):
        try:
            return await agent.ask_cloud(capability, document, timeout=10)
        except Denied:
            raise
        except Exception:  # the link may still be coming up
            await asyncio.sleep(1)
    return await agent.ask_cloud(capability, document, timeout=10)


async def test_install_configure_run_reload_upgrade_remove_purge(
    machine: Container,
    packages: tuple[Path, Path],
    cloud: tuple[CloudGateway, NatsServer, Path],
    tmp_path: Path,
) -> None:
    first, upgrade = packages
    gateway, cloud_nats, pki = cloud
    # --- install: the NATS unit runs at once; the bridge waits for its configuration.
    machine.put(first, "/tmp/rbridge.deb")
    machine.sh("apt-get install -y -q /tmp/rbridge.deb >/dev/null 2>&1 || dpkg -i /tmp/rbridge.deb")
    await wait_active(machine, "rbridge-nats")
    assert machine.sh("systemd-analyze verify rbridge-edge.service rbridge-nats.service 2>&1") == ""
    exposure = machine.sh("systemd-analyze security --offline=yes rbridge-edge.service | tail -1")
    assert float(found(r"exposure level for rbridge-edge.service: ([0-9.]+)", exposure)) <= 2.0

    # --- configure, as the install guide says.
    signing = tmp_path / "signing"
    assert rbridge(["policy", "keygen", "--out", str(signing)]) == 0
    machine.put(pki / "site-plant-a.pem", "/etc/rbridge/tls/site.pem")
    machine.put(pki / "site-plant-a.key", "/etc/rbridge/tls/site.key")
    machine.put(pki / "ca.pem", "/etc/rbridge/tls/ca.pem")
    machine.put(
        policy_bundle(tmp_path, signing, 1, summaries=False),
        "/etc/rbridge/policy/policy.bundle",
    )
    machine.put(signing / "policy-signing.pub", "/etc/rbridge/policy/policy-signing.pub")
    config = yaml.safe_load((ROOT / "deploy" / "package" / "edge.yaml").read_text())
    config["site"] = "plant-a"
    config["destinations"] = {
        "cloud-eu": {"address": f"localhost:{gateway.port}", "jurisdiction": "EU"},
        "cloud-us": {"address": f"localhost:{gateway.port}", "jurisdiction": "US"},
    }
    config["policy"]["watch_seconds"] = 3600  # only `systemctl reload` may change the policy
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(config))
    machine.put(tmp_path / "edge.yaml", "/etc/rbridge/edge.yaml")
    machine.sh(
        "chgrp -R rbridge /etc/rbridge/tls /etc/rbridge/policy && chmod 0640 /etc/rbridge/tls/* /etc/rbridge/policy/*"
    )
    machine.sh("systemctl start rbridge-edge")
    await wait_active(machine, "rbridge-edge")

    # --- the hardening is in effect on the running process.
    pid = machine.sh("systemctl show -p MainPID --value rbridge-edge").strip()
    status = machine.sh(f"cat /proc/{pid}/status")
    assert found(r"(?m)^Uid:\s+(\d+)", status) != "0"
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
    assert re.search(r"^Seccomp:\s+2$", status, re.M), status
    assert machine.sh(f"ps -o user= -p {pid}").strip() == "rbridge"
    mounts = {
        line.split()[4]: line.split()[5]
        for line in machine.sh(f"cat /proc/{pid}/mountinfo").splitlines()
    }
    assert mounts["/"].startswith("ro"), mounts["/"]  # ProtectSystem=strict
    assert mounts["/var/lib/rbridge"].startswith("rw"), mounts  # its state, writable

    # --- a claim goes through to the gateway on this host and its reply comes back named.
    seed = tmp_path / "agents.nk"
    machine.get("/etc/rbridge/nkeys/agents.nk", seed)
    parser, scorer = claims_agents(cloud_nats.url)
    summarizer = CloudAgent("summarizer", nats_url=cloud_nats.url)

    @summarizer.capability("claims.summary")
    async def summarize(request: CloudRequest) -> dict[str, object]:
        return {"claim_id": request.payload["claim_id"], "words": len(str(request.payload).split())}

    cloud_agents = (parser, scorer, summarizer)
    for agent in cloud_agents:
        await agent.start()
    desk = Agent("front-desk", nats_url=ONPREM_NATS, connect={"nkeys_seed": str(seed)})
    await desk.start()
    document = claim(1, random.Random(1))
    try:
        parsed = await ask_until(desk, "docs.parse", document)
        assert parsed["claimant"]["name"] == document["claimant"]["name"]  # type: ignore[index]
        with pytest.raises(Denied) as denied:
            await desk.ask_cloud("claims.summary", document, timeout=10)
        assert denied.value.reason == "no-matching-rule"

        # --- a new policy (claim summaries may leave) takes effect on `systemctl reload`.
        machine.put(
            policy_bundle(tmp_path, signing, 2, summaries=True), "/etc/rbridge/policy/policy.bundle"
        )
        machine.sh(
            "chmod 0640 /etc/rbridge/policy/policy.bundle && chgrp rbridge /etc/rbridge/policy/policy.bundle"
        )
        machine.sh("systemctl reload rbridge-edge")
        summary: Any = None
        for _ in range(20):
            try:
                summary = await desk.ask_cloud("claims.summary", document, timeout=10)
                break
            except Denied:
                await asyncio.sleep(0.5)
        if summary is None:
            journal = machine.sh("journalctl -u rbridge-edge --no-pager | tail -20", check=False)
            raise AssertionError(f"the reloaded policy did not take effect:\n{journal}")
        assert summary["claim_id"] == document["claim_id"]

        # --- upgrade: configuration, keys and policy kept; the bridge runs the new version.
        keys_before = machine.sh("sha256sum /var/lib/rbridge/keys/*")
        machine.put(upgrade, "/tmp/rbridge-new.deb")
        machine.sh("dpkg -i /tmp/rbridge-new.deb >/dev/null")
        assert machine.sh("dpkg-query -W -f '${Version}' rbridge") == f"{UPGRADE_VERSION}-1"
        assert machine.sh("rbridge --version").strip() == f"rbridge {UPGRADE_VERSION}"
        await wait_active(machine, "rbridge-edge")
        assert machine.sh("sha256sum /var/lib/rbridge/keys/*") == keys_before
        assert "site: plant-a" in machine.sh("cat /etc/rbridge/edge.yaml")
        again = await ask_until(desk, "docs.parse", document)
        assert again["claimant"]["name"] == document["claimant"]["name"]  # type: ignore[index]
        summary = await ask_until(desk, "claims.summary", document)
        assert summary["claim_id"] == document["claim_id"]
    finally:
        await desk.stop()
        for agent in cloud_agents:
            await agent.stop()

    # --- remove keeps configuration and state; purge removes them and the user.
    machine.sh("dpkg -r rbridge >/dev/null")
    assert status_of(machine, "rbridge-edge") != "active"
    assert machine.sh("test -e /opt/rbridge && echo present || echo gone").strip() == "gone"
    assert (
        machine.sh("test -f /etc/rbridge/edge.yaml && ls /var/lib/rbridge/keys | wc -l").strip()
        == "3"
    )
    machine.sh("dpkg -P rbridge >/dev/null")
    assert machine.sh("ls -d /etc/rbridge /var/lib/rbridge 2>/dev/null | wc -l").strip() == "0"
    assert machine.sh("getent passwd rbridge || echo none").strip() == "none"
