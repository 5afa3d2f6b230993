"""The processes of ``rbridge up``: two NATS servers, the gateway and the edge bridge.

Everything lives in one state directory (JetStream stores, certificates, keys, the policy, the
audit trail, configs and logs). Every child is started so that it dies with this process, even
if this process is SIGKILLed (Linux parent-death signal), and :meth:`Stack.stop` stops them in
order: edge bridge, gateway, then the NATS servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
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

SITE = "plant-a"
MARKER = ".rbridge-up"
KEY_NAMES = ("pseudonyms", "correlation", "reply-tokens")


class StackError(RbridgeError):
    """A part of the local system did not come up; the message says which and where its log is."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
    config: Path
    log: Path
    http_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass
class Stack:
    state: Path
    policy: Path
    traces: str | None = None  # an OTLP endpoint the runtimes send traces to
    edge_nats: NatsServer = field(init=False)
    cloud_nats: NatsServer = field(init=False)
    gateway: Runtime = field(init=False)
    gateway_us: Runtime = field(init=False)
    edge: Runtime = field(init=False)

    def __post_init__(self) -> None:
        self.edge_nats = NatsServer(self.state / "edge-nats", name="edge", die_with_parent=True)
        self.cloud_nats = NatsServer(self.state / "cloud-nats", name="cloud", die_with_parent=True)

    @property
    def audit_dir(self) -> Path:
        return self.state / "audit"

    def prepare(self) -> None:
        """Certificates, keys, the policy, and the two runtimes' configurations."""
        prepare_state(self.state)
        pki = write_dev_pki(self.state / "certs", [SITE])
        keys = FileKeyStore(self.state / "keys")
        for name in KEY_NAMES:
            keys.create(name)
        (self.state / "policy").mkdir()
        policy = self.state / "policy" / self.policy.name
        shutil.copy(self.policy, policy)
        self.edge_nats.start()
        self.cloud_nats.start()
        logs = self.state / "logs"
        logs.mkdir()
        self.gateway = Runtime(
            "EU gateway", self.state / "cloud-eu.yaml", logs / "gateway-eu.log", free_port()
        )
        self.gateway_us = Runtime(
            "US gateway", self.state / "cloud-us.yaml", logs / "gateway-us.log", free_port()
        )
        self.edge = Runtime("edge bridge", self.state / "edge.yaml", logs / "edge.log", free_port())
        # Two gateways, one per jurisdiction the policy names. Here both store into the same
        # local cloud NATS; in production each is its own cloud.
        link_ports = {}
        for runtime, jurisdiction in ((self.gateway, "eu"), (self.gateway_us, "us")):
            link_ports[jurisdiction] = free_port()
            cloud_config = {
                "listen": f"127.0.0.1:{link_ports[jurisdiction]}",
                "http": f"127.0.0.1:{runtime.http_port}",
                "trust_domain": DEFAULT_TRUST_DOMAIN,
                "tls": {
                    "cert": str(pki.gateway_cert),
                    "key": str(pki.gateway_key),
                    "ca": str(pki.ca),
                },
                "crl": str(pki.crl),
                "sites": {SITE: {"capabilities": ["docs.>", "claims.>", "stats.>"]}},
                "nats": {"url": self.cloud_nats.url},
                "grace_seconds": 3,
            }
            if self.traces:
                cloud_config["tracing"] = {"endpoint": self.traces}
            runtime.config.write_text(yaml.safe_dump(cloud_config))
        cert, key = pki.sites[SITE]
        edge_config = {
            "site": SITE,
            "nats": {"url": self.edge_nats.url},
            "policy": {"path": str(policy), "watch_seconds": 1},
            "keys_dir": str(self.state / "keys"),
            "audit": {"dir": str(self.audit_dir)},
            "quarantine": {"enabled": True},
            "destinations": {
                "cloud-eu": {"address": f"localhost:{link_ports['eu']}", "jurisdiction": "EU"},
                "cloud-us": {"address": f"localhost:{link_ports['us']}", "jurisdiction": "US"},
            },
            "tls": {"cert": str(cert), "key": str(key), "ca": str(pki.ca)},
            "http": f"127.0.0.1:{self.edge.http_port}",
            "grace_seconds": 3,
        }
        if self.traces:
            edge_config["tracing"] = {"endpoint": self.traces}
        self.edge.config.write_text(yaml.safe_dump(edge_config))

    async def start(self, timeout: float = 60.0) -> None:
        """Start the gateway, then the edge bridge; return when both report ready."""
        for runtime, command in (
            (self.gateway, "cloud"),
            (self.gateway_us, "cloud"),
            (self.edge, "edge"),
        ):
            with runtime.log.open("ab") as log:
                runtime.process = subprocess.Popen(  # noqa: S603 - our own CLI
                    [
                        sys.executable,
                        "-m",
                        "bridge.cli.main",
                        command,
                        "--config",
                        str(runtime.config),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                )
            await self._ready(runtime, timeout)

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
        runtimes = [getattr(self, name, None) for name in ("edge", "gateway", "gateway_us")]
        for runtime in runtimes:
            if runtime is None or runtime.process is None or runtime.process.poll() is not None:
                continue
            runtime.process.terminate()
            try:
                runtime.process.wait(10)
            except subprocess.TimeoutExpired:
                runtime.process.kill()
                runtime.process.wait()
        for server in (self.edge_nats, self.cloud_nats):
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
