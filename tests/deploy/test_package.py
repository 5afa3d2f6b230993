"""The on-prem package, installed and run for real by following the install guide: a Debian
container with systemd as PID 1, every marked step of ``deploy/README.md`` run as written, in
order (install, certificates, signed policy, configuration, start, smoke test, policy reload with
a good and a refused bundle, restart with the refused one on disk, certificate rotation, upgrade,
audit archive and verification, remove, purge), with a gateway and cloud agents on this host.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.cloud.app import CloudGateway
from bridge.cloud.config import CloudSettings
from bridge.link.pki import DEFAULT_TRUST_DOMAIN
from bridge.natsserver import NatsServer
from cloud_agent.examples.claims import claims_agents
from tests.deploy.guide import Guide, steps
from tests.deploy.podman import ROOT, Container, require_containers, run

# Builds (debootstrap, wheels, images, packages) happen in the first test: allow for them.
pytestmark = [pytest.mark.slow, pytest.mark.deploy, pytest.mark.timeout(1800)]
FIRST_VERSION, UPGRADE_VERSION = "0.1.0", "0.1.1"
AGENT = "RBRIDGE_AGENT_NKEY=/etc/rbridge/nkeys/agents.nk"
ONPREM_STEPS = [name for name in steps() if not name.startswith("compose-")]


@dataclass(frozen=True)
class Release:
    debian: str
    suite: str
    package_release: str  # the Debian revision of the package files


RELEASES = [Release("12", "bookworm", "1"), Release("13", "trixie", "1+deb13")]


@pytest.fixture(scope="module", params=RELEASES, ids=lambda r: f"debian-{r.debian}")
def release(request: pytest.FixtureRequest) -> Release:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def packages(release: Release) -> tuple[Path, Path]:
    require_containers()
    run("deploy/package/build", release.debian, timeout=900)
    run("env", f"RBRIDGE_PACKAGE_VERSION={UPGRADE_VERSION}", "deploy/package/build",
        release.debian, timeout=900)  # fmt: skip
    run("deploy/package/systemd-image", release.debian, timeout=900)
    return (
        ROOT / "dist" / f"rbridge_{FIRST_VERSION}-{release.package_release}_amd64.deb",
        ROOT / "dist" / f"rbridge_{UPGRADE_VERSION}-{release.package_release}_amd64.deb",
    )


@pytest.fixture
def machine(release: Release, packages: tuple[Path, Path]) -> Iterator[Container]:
    """A fresh Debian of that release with systemd, sharing this host's network (its NATS on
    127.0.0.1:4222), with the two packages in root's home as the operator downloaded them."""
    name = f"rbridge-onprem-{uuid.uuid4().hex[:8]}"
    run("podman", "run", "-d", "--name", name, "--privileged", "--systemd=always",
        "--network", "host", f"localhost/rbridge-systemd:{release.suite}")  # fmt: skip
    container = Container(name)
    try:
        for _ in range(100):
            state = container.sh("systemctl is-system-running || true").strip()
            if state in ("running", "degraded"):
                break
        for package in packages:
            container.put(package, f"/root/{package.name}")
        yield container
    finally:
        container.remove()


def test_the_packages_pass_lintian(packages: tuple[Path, Path]) -> None:
    """Lintian, Debian's own package checker, finds nothing beyond the justified overrides."""
    lintian = shutil.which("lintian")
    assert lintian, "lintian is missing: scripts/setup-system installs it"
    checked = run(
        lintian, "--fail-on", "error,warning", *map(str, packages), check=False, timeout=600
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def start_cloud(stack: AsyncExitStack, pki: Path, work: Path) -> CloudGateway:
    """The cloud side on this host: NATS, a gateway with the trial CA's certificate, and the
    example agents (the parser serves ``docs.parse``, which ``rbridge probe`` asks)."""
    nats_server = NatsServer(work / "cloud-nats", name="cloud")
    nats_server.start()
    stack.callback(nats_server.kill)
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
    stack.push_async_callback(gateway.stop)
    for agent in claims_agents(nats_server.url):
        await agent.start()
        stack.push_async_callback(agent.stop)
    return gateway


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in:\n{text}"
    return match.group(1)


def status_of(machine: Container, unit: str) -> str:
    return machine.sh(f"systemctl is-active {unit} || true").strip()


def journal(machine: Container, since: str = "") -> str:
    return machine.sh(f"journalctl -u rbridge-edge --no-pager {since} | tail -40", check=False)


async def wait_for(machine: Container, condition: str, what: str, seconds: float = 60) -> float:
    """Wait until the shell ``condition`` holds in the machine; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        check = run("podman", "exec", machine.name, "sh", "-c", condition, check=False)
        if check.returncode == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what} not within {seconds:.0f} s:\n{journal(machine)}")


async def probe(machine: Container, *extra: str) -> str:
    return await asyncio.to_thread(machine.sh, f"{AGENT} rbridge probe {' '.join(extra)}")


@dataclass
class OnPremGuide(Guide):
    """The guide's steps in the machine, each in a thread (the gateway and the cloud agents in
    this event loop keep serving meanwhile); a failed step shows the bridge's journal too.
    ``renames`` are the package file names of another Debian release, as the guide says."""

    renames: dict[str, str] = field(default_factory=dict)

    async def step(self, name: str, **options: Any) -> subprocess.CompletedProcess[str]:
        script = self.steps[name]
        renamed = {old: new for old, new in self.renames.items() if old in script}
        if renamed:
            options["replace"] = {**renamed, **(options.get("replace") or {})}
        try:
            return await asyncio.to_thread(self.run, name, **options)
        except AssertionError as failure:
            bridge_log = journal(Container(self.container or ""))
            raise AssertionError(f"{failure}\n--- journal:\n{bridge_log}") from None


async def test_the_install_guide_followed_step_by_step(
    release: Release, machine: Container, tmp_path: Path
) -> None:
    guide = OnPremGuide(
        container=machine.name,
        renames={
            f"rbridge_{version}-1_amd64.deb": f"rbridge_{version}-{release.package_release}_amd64.deb"
            for version in (FIRST_VERSION, UPGRADE_VERSION)
            if release.package_release != "1"
        },
    )
    async with AsyncExitStack() as cloud:
        # --- 1. install: the NATS unit runs at once; the bridge waits for its configuration.
        await guide.step("install")
        assert status_of(machine, "rbridge-edge") != "active"
        units = "rbridge-edge.service rbridge-edge@9465.service rbridge-nats.service"
        assert machine.sh(f"systemd-analyze verify {units} 2>&1") == ""
        for unit in ("rbridge-edge.service", "rbridge-edge@9465.service"):
            exposure = machine.sh(f"systemd-analyze security --offline=yes {unit} | tail -1")
            assert float(found(rf"exposure level for {unit}: ([0-9.]+)", exposure)) <= 2
        assert machine.sh("stat -c '%U %a' /etc/rbridge/nkeys/agents.nk").split() == [
            "root",
            "600",
        ]

        # --- 2. certificates from a trial CA; the gateway (here, on this host) gets its part.
        await guide.step("trial-certificates")
        assert machine.sh("stat -c '%U:%G %a' /etc/rbridge/tls/site.key").strip() == (
            "root:rbridge 640"
        )
        machine.get("/root/rbridge-ca", tmp_path / "ca")
        gateway = await start_cloud(cloud, tmp_path / "ca", tmp_path)

        # --- 3.-5. signed policy, edge.yaml (the trial gateway's port is this test's), start.
        await guide.step("sign-policy")
        configured = await guide.step(
            "configure", replace={"localhost:7443": f"localhost:{gateway.port}"}
        )
        checked = configured.stdout
        assert checked.startswith("ok: edge bridge for site plant-a"), checked
        started = (await guide.step("start")).stdout
        assert "active (running)" in started
        assert "policy claims revision 1" in started, started
        await wait_for(
            machine,
            "journalctl -u rbridge-edge --no-pager -o cat | grep -q '^{.*rbridge edge: site plant-a'",
            "the start-up line, as JSON",
        )

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

        # --- 6. the smoke test, authenticating as the guide says: a reply, a deny, the agents.
        smoke = (await guide.step("probe")).stdout
        assert "ok: docs.parse answered by the cloud" in smoke, smoke
        assert "ok: health.records.upload denied by rule" in smoke, smoke
        # Without the documented identity, the packaged NATS refuses and the error says what
        # to pass.
        bare = await asyncio.to_thread(
            run, "podman", "exec", machine.name, "rbridge", "probe", check=False
        )
        assert bare.returncode == 1
        assert "authorization refused" in bare.stderr
        assert "RBRIDGE_AGENT_NKEY" in bare.stderr
        assert "Traceback" not in bare.stderr

        # --- policy changes: a good bundle is applied on reload, a refused one fails the reload.
        await guide.step("reload")
        refused = await guide.step("reload-refused", check=False)
        assert refused.returncode != 0, refused.stdout
        assert "would be refused: refusing rollback: bundle revision 1" in journal(machine)
        assert status_of(machine, "rbridge-edge") == "active"
        assert "revision 2" in machine.sh("systemctl status rbridge-edge --no-pager")
        await probe(machine)  # the running policy still serves
        # ... and a restart with the refused file on disk runs the last good policy.
        await guide.step("restart-refused")
        readyz = (
            '/opt/rbridge/bin/python -c "import urllib.request as u; '
            "print(u.urlopen('http://127.0.0.1:9464/readyz', timeout=5).read().decode())\""
        )
        await wait_for(machine, readyz, "ready again after the restart (its link up)")
        ready = machine.sh(readyz)
        assert "note: the configured policy /etc/rbridge/policy/policy.bundle was refused" in ready
        await probe(machine)
        await guide.step("reload-good-again")
        assert "last good" not in machine.sh("systemctl status rbridge-edge --no-pager")

        # --- certificate rotation: used within seconds, the new serial in the journal.
        issued = (await guide.step("rotate-certificate")).stdout
        serial = found(r"serial ([0-9a-f]+)", issued).lstrip("0")
        seconds = await wait_for(
            machine,
            f"journalctl -u rbridge-edge --no-pager | grep -q 'site certificate in use: "
            f"/etc/rbridge/tls/site.pem, serial {serial}'",
            "the rotated site certificate",
        )
        print(f"rotated site certificate in use after {seconds:.1f} s")
        await probe(machine)

        # --- upgrade: the new version runs, the local NATS is not restarted, state is kept.
        nats_pid = machine.sh("systemctl show -p MainPID --value rbridge-nats").strip()
        keys_before = machine.sh("sha256sum /var/lib/rbridge/keys/*")
        upgrade_started = time.monotonic()
        upgraded = (await guide.step("upgrade")).stdout
        assert upgraded.strip().endswith(f"rbridge {UPGRADE_VERSION}"), upgraded
        assert (
            machine.sh("dpkg-query -W -f '${Version}' rbridge")
            == f"{UPGRADE_VERSION}-{release.package_release}"
        )
        assert machine.sh("systemctl show -p MainPID --value rbridge-nats").strip() == nats_pid
        # Where the bus does restart (a new nats-server), the gap is short: SIGTERM, not lame duck.
        restart_started = time.monotonic()
        machine.sh("systemctl restart rbridge-nats")
        print(f"rbridge-nats restart: {time.monotonic() - restart_started:.1f} s")
        assert status_of(machine, "rbridge-edge") == "active"
        await probe(machine)
        print(f"upgrade to a first answered probe: {time.monotonic() - upgrade_started:.1f} s")
        assert machine.sh("sha256sum /var/lib/rbridge/keys/*") == keys_before
        assert "site: plant-a" in machine.sh("cat /etc/rbridge/edge.yaml")

        # --- more than one core: two workers beside the bridge, on the same consumer, each
        # with its own audit trail; with the first bridge stopped, they carry the flow alone.
        workers = (await guide.step("workers")).stdout
        assert workers.splitlines()[0].strip() == "2", workers
        assert "ok: docs.parse answered by the cloud" in workers, workers
        worker_trails = "cat /var/lib/rbridge/audit/946[56]/audit.jsonl 2>/dev/null | wc -l"
        machine.sh("systemctl stop rbridge-edge")
        before = int(machine.sh(worker_trails))
        main_trail = machine.sh("wc -l < /var/lib/rbridge/audit/audit.jsonl")
        for _ in range(4):
            assert "ok: docs.parse answered" in await probe(machine)
        assert int(machine.sh(worker_trails)) >= before + 4
        assert machine.sh("wc -l < /var/lib/rbridge/audit/audit.jsonl") == main_trail
        assert machine.sh("stat -c '%U %a' /var/lib/rbridge/audit/9465").split() == [
            "rbridge",
            "700",
        ]
        # A worker pointed at a trail in use is refused at start, by name, and the others go on.
        clash = machine.sh(
            "runuser -u rbridge -- env RBRIDGE_HTTP=127.0.0.1:0 "
            "RBRIDGE_AUDIT__DIR=/var/lib/rbridge/audit/9465 RBRIDGE_STATE_DIR=/var/lib/rbridge "
            "rbridge edge --config /etc/rbridge/edge.yaml 2>&1; echo exit=$?",
            check=False,
        )
        assert "is in use by another process" in clash, clash
        assert "exit=1" in clash, clash
        assert "Traceback" not in clash, clash
        assert status_of(machine, "rbridge-edge@9465") == "active"
        machine.sh("systemctl start rbridge-edge")

        # --- archive and verify the audit trail, remove (state kept), purge (all gone).
        verified = (await guide.step("archive-audit")).stdout
        assert verified.strip().splitlines()[-1].startswith("ok: "), verified
        assert verified.strip().endswith("in 3 trails"), verified
        await guide.step("remove")
        for unit in ("rbridge-edge", "rbridge-edge@9465", "rbridge-edge@9466"):
            assert status_of(machine, unit) != "active"
        assert machine.sh("ls /etc/systemd/system/*.wants | grep -c rbridge-edge || true") == "0\n"
        assert machine.sh("test -e /opt/rbridge && echo present || echo gone").strip() == "gone"
        assert machine.sh("ls /var/lib/rbridge/keys | wc -l").strip() == "3"
        assert machine.sh("test -f /etc/rbridge/edge.yaml && echo kept").strip() == "kept"
        await guide.step("purge")
        assert machine.sh("ls -d /etc/rbridge /var/lib/rbridge 2>/dev/null | wc -l").strip() == "0"
        assert machine.sh("getent passwd rbridge || echo none").strip() == "none"
        assert machine.sh("test -s /root/rbridge-audit.tar.gz && echo archived").strip() == (
            "archived"
        )
    # Every on-prem step of the guide ran, in the guide's order.
    assert [name for name in guide.done if name in ONPREM_STEPS] == ONPREM_STEPS
