"""The processes of ``rbridge up``: two NATS servers (or two clusters of three), the gateways
and the edge bridge (two with ``--ha``).

Everything lives in one state directory (JetStream stores, certificates, keys, the policy, the
audit trail, configs and logs). Every child is started so that it dies with this process, even
if this process is SIGKILLed (Linux parent-death signal), and :meth:`Stack.stop` stops them in
order: edge bridges, gateways, then the NATS servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bridge.errors import RbridgeError, UsageError
from bridge.keys import FileKeyStore
from bridge.link.pki import DEFAULT_TRUST_DOMAIN, write_dev_pki
from bridge.natsserver import NatsServer, die_with_parent
from bridge.up.cluster import Cluster
from bridge.up.ports import free_port

SITE = "plant-a"
MARKER = ".rbridge-up"
KEY_NAMES = ("pseudonyms", "correlation", "reply-tokens")


class StackError(RbridgeError):
    """A part of the local system did not come up; the message says which and where its log is."""


def bundled_policy() -> Path:
    """The claims policy of a source checkout."""
    candidate = Path(__file__).resolve().parents[2] / "policies" / "claims.yaml"
    if not candidate.is_file():
        raise UsageError("the bundled claims policy is not here; pass --policy FILE")
    return candidate


def prepare_state(state: Path) -> None:
    """A fresh state directory: ours from an earlier run is wiped, anything else is refused."""
    if state.exists():
        if not (state / MARKER).exists() and any(state.iterdir()):
            raise UsageError(f"{state} exists and was not made by 'rbridge up'; choose another")
        shutil.rmtree(state)
    state.mkdir(parents=True)
    (state / MARKER).write_text("made by rbridge up; wiped on the next run\n")


@dataclass
class Runtime:
    name: str
    command: str  # edge | cloud
    config: Path
    log: Path
    http_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


Servers = NatsServer | Cluster


@dataclass
class Stack:
    """With ``ha``: three-node clusters on both sides, two edge bridges on the shared durable
    and two gateways per jurisdiction, each edge with the other's gateway as its standby."""

    state: Path
    policy: Path
    traces: str | None = None  # an OTLP endpoint the runtimes send traces to
    ha: bool = False
    edge_nats: Servers = field(init=False)
    cloud_nats: Servers = field(init=False)
    edges: list[Runtime] = field(init=False, default_factory=list)
    gateways: list[Runtime] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.ha:
            self.edge_nats = Cluster(self.state / "edge-nats", name="edge", die_with_parent=True)
            self.cloud_nats = Cluster(self.state / "cloud-nats", name="cloud", die_with_parent=True)
        else:
            self.edge_nats = NatsServer(self.state / "edge-nats", name="edge", die_with_parent=True)
            self.cloud_nats = NatsServer(
                self.state / "cloud-nats", name="cloud", die_with_parent=True
            )

    @property
    def edge(self) -> Runtime:
        return self.edges[0]

    @property
    def audit_dir(self) -> Path:
        return self.state / "audit"

    def audit_trails(self) -> list[Path]:
        """One trail per edge bridge (each process writes its own)."""
        return (
            [self.audit_dir / edge.name.split()[-1] for edge in self.edges]
            if self.ha
            else [self.audit_dir]
        )

    @property
    def runtimes(self) -> list[Runtime]:
        return [*self.gateways, *self.edges]

    def servers(self) -> list[NatsServer]:
        return [
            server
            for side in (self.edge_nats, self.cloud_nats)
            for server in (side.servers if isinstance(side, Cluster) else [side])
        ]

    def prepare(self) -> None:
        """Certificates, keys, the policy, the NATS servers, and the runtimes' configurations."""
        prepare_state(self.state)
        pki = write_dev_pki(self.state / "certs", [SITE])
        keys = FileKeyStore(self.state / "keys")
        for name in KEY_NAMES:
            keys.create(name)
        (self.state / "policy").mkdir()
        policy = self.state / "policy" / self.policy.name
        shutil.copy(self.policy, policy)
        for server in self.servers():
            server.start()
        logs = self.state / "logs"
        logs.mkdir()
        # Gateways per jurisdiction the policy names (two of each with ``ha``). Here all store
        # into the same local cloud NATS; in production each jurisdiction is its own cloud.
        copies = ("a", "b") if self.ha else ("",)
        link_ports: dict[tuple[str, str], int] = {}
        for jurisdiction in ("eu", "us"):
            for copy in copies:
                name = f"{jurisdiction.upper()} gateway" + (f" {copy}" if copy else "")
                suffix = f"{jurisdiction}{'-' + copy if copy else ''}"
                runtime = Runtime(
                    name, "cloud", self.state / f"cloud-{suffix}.yaml",
                    logs / f"gateway-{suffix}.log", free_port(),
                )  # fmt: skip
                link_ports[jurisdiction, copy] = free_port()
                cloud_config = {
                    "name": f"gateway-{suffix}",
                    "listen": f"127.0.0.1:{link_ports[jurisdiction, copy]}",
                    "http": f"127.0.0.1:{runtime.http_port}",
                    "trust_domain": DEFAULT_TRUST_DOMAIN,
                    "tls": {
                        "cert": str(pki.gateway_cert),
                        "key": str(pki.gateway_key),
                        "ca": str(pki.ca),
                    },
                    "crl": str(pki.crl),
                    "sites": {SITE: {"capabilities": ["docs.>", "claims.>", "stats.>"]}},
                    "nats": self._nats(self.cloud_nats),
                    "grace_seconds": 3,
                }
                if self.traces:
                    cloud_config["tracing"] = {"endpoint": self.traces}
                runtime.config.write_text(yaml.safe_dump(cloud_config))
                self.gateways.append(runtime)
        cert, key = pki.sites[SITE]
        for copy in copies:
            others = [other for other in copies if other != copy]
            name = "edge bridge" + (f" {copy}" if copy else "")
            suffix = f"-{copy}" if copy else ""
            runtime = Runtime(
                name, "edge", self.state / f"edge{suffix}.yaml", logs / f"edge{suffix}.log",
                free_port(),
            )  # fmt: skip
            destinations = {
                f"cloud-{jurisdiction}": {
                    "address": f"localhost:{link_ports[jurisdiction, copy]}",
                    "standby": [f"localhost:{link_ports[jurisdiction, o]}" for o in others],
                    "jurisdiction": jurisdiction.upper(),
                }
                for jurisdiction in ("eu", "us")
            }
            edge_config = {
                "site": SITE,
                "instance": f"up{suffix}",
                "nats": self._nats(self.edge_nats),
                "policy": {"path": str(policy), "watch_seconds": 1},
                "keys_dir": str(self.state / "keys"),
                "audit": {"dir": str(self.audit_dir / copy if copy else self.audit_dir)},
                "state_dir": str(self.state),
                "quarantine": {"enabled": True},
                "destinations": destinations,
                "tls": {"cert": str(cert), "key": str(key), "ca": str(pki.ca)},
                "http": f"127.0.0.1:{runtime.http_port}",
                "grace_seconds": 3,
            }
            if self.traces:
                edge_config["tracing"] = {"endpoint": self.traces}
            runtime.config.write_text(yaml.safe_dump(edge_config))
            self.edges.append(runtime)

    @staticmethod
    def _nats(servers: Servers) -> dict[str, object]:
        if isinstance(servers, Cluster):
            return {"servers": servers.urls}
        return {"url": servers.url}

    async def start(self, timeout: float = 60.0) -> None:
        """Start the gateways, then the edge bridges; return when all report ready."""
        for side in (self.edge_nats, self.cloud_nats):
            if isinstance(side, Cluster):
                await side.wait_for_jetstream(timeout)
        for runtime in self.runtimes:
            self.launch(runtime)
            await self._ready(runtime, timeout)

    def launch(self, runtime: Runtime) -> None:
        with runtime.log.open("ab") as log:
            runtime.process = subprocess.Popen(  # noqa: S603 - our own CLI
                [sys.executable, "-m", "bridge.cli.main", runtime.command, "--config",
                 str(runtime.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )  # fmt: skip

    async def _ready(self, runtime: Runtime, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert runtime.process is not None
            if runtime.process.poll() is not None:
                raise StackError(
                    f"the {runtime.name} exited with {runtime.process.returncode}; see {runtime.log}"
                )
            if await asyncio.to_thread(status_of, f"{runtime.base}/readyz") == 200:
                return
            await asyncio.sleep(0.2)
        raise StackError(
            f"the {runtime.name} was not ready within {timeout:.0f} s; see {runtime.log}"
        )

    def stop(self) -> None:
        """Stop everything, newest first: SIGTERM, then SIGKILL after a grace period."""
        for runtime in reversed(self.runtimes):
            if runtime.process is None or runtime.process.poll() is not None:
                continue
            runtime.process.terminate()
            try:
                runtime.process.wait(10)
            except subprocess.TimeoutExpired:
                runtime.process.kill()
                runtime.process.wait()
        for server in self.servers():
            server.stop()


def status_of(url: str) -> int:
    """The HTTP status of GET ``url`` (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback http
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def fetch_text(url: str) -> str:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
        return str(response.read().decode())
    return ""
