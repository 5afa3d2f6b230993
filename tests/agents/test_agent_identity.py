"""Agents and the tools that act as agents take the agents' NATS identity one documented way:
--nats/--nkey/--creds, or RBRIDGE_AGENT_NATS_URL/_NKEY/_CREDS; a refusal says what to pass."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.cli.main import main
from bridge.natsserver import NatsServer
from bridge.up.ports import free_port
from cloud_agent import CloudAgent, CloudAgentUnavailable
from edge_agent import Agent, Unavailable
from tests.conftest import ROOT

RBRIDGE = Path(sys.executable).parent / "rbridge"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[NatsServer, Path]]:
    """A NATS server that trusts only the identities `rbridge nats nkeys` made, and the seeds."""
    seeds, auth = tmp_path / "nkeys", tmp_path / "nats" / "nats-auth.conf"
    auth.parent.mkdir()
    assert main(["nats", "nkeys", "--dir", str(seeds), "--auth-conf", str(auth)]) == 0
    server = NatsServer(tmp_path / "nats", extra_config="include ./nats-auth.conf")
    server.start()
    yield server, seeds / "agents.nk"
    server.kill()


@pytest.mark.servers
async def test_the_environment_gives_an_agent_its_identity(
    secured: tuple[NatsServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, seed = secured
    monkeypatch.setenv("RBRIDGE_AGENT_NATS_URL", server.url)
    monkeypatch.setenv("RBRIDGE_AGENT_NKEY", str(seed))
    agent = Agent("identity-check", heartbeat_seconds=0.5)
    assert agent.nats_url == server.url
    await agent.start()
    await agent.stop()
    cloud = CloudAgent("identity-check")
    await cloud.start()
    await cloud.stop()


@pytest.mark.servers
async def test_without_the_nkey_the_refusal_says_what_to_pass(
    secured: tuple[NatsServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = secured
    monkeypatch.delenv("RBRIDGE_AGENT_NKEY", raising=False)
    with pytest.raises(Unavailable) as caught:
        await Agent("no-identity", nats_url=server.url, connect_timeout=3).start()
    message = str(caught.value)
    assert "authorization refused" in message
    assert "--nkey FILE or RBRIDGE_AGENT_NKEY" in message
    assert server.url in message


async def test_a_cloud_agent_gives_up_within_its_timeout() -> None:
    """It used to retry for ever when NATS was unreachable; now it fails, naming the server."""
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(CloudAgentUnavailable, match=f"cannot connect to NATS at {url}"):
        await CloudAgent("lonely", nats_url=url, connect_timeout=1.5).start()


@pytest.mark.parametrize("kind", [CloudAgent, Agent])
async def test_a_host_that_does_not_resolve_is_named_and_a_password_in_the_url_is_not(
    kind: type[CloudAgent] | type[Agent], caplog: pytest.LogCaptureFixture
) -> None:
    url = "nats://bridge:s3cret-pass@no-such-host.invalid:4222"
    with pytest.raises(Exception, match="cannot connect to NATS at ") as failure:
        await kind("lonely", nats_url=url, connect_timeout=1.5).start()
    assert "nats://***@no-such-host.invalid:4222" in str(failure.value)
    assert any("no-such-host.invalid" in record.getMessage() for record in caplog.records)
    everything = str(failure.value) + "".join(record.getMessage() for record in caplog.records)
    assert "s3cret-pass" not in everything


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        env={**os.environ, **env},
    )  # fmt: skip


@pytest.mark.servers
def test_rbridge_agents_takes_the_identity_and_explains_a_refusal(
    secured: tuple[NatsServer, Path],
) -> None:
    server, seed = secured
    ok = run(str(RBRIDGE), "agents", "--nats", server.url, "--nkey", str(seed), env={})
    assert ok.returncode == 0, ok.stderr
    refused = run(str(RBRIDGE), "agents", "--nats", server.url, env={"RBRIDGE_AGENT_NKEY": ""})
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert "authorization refused" in refused.stderr
    assert "RBRIDGE_AGENT_NKEY" in refused.stderr
    by_env = run(
        str(RBRIDGE), "agents",
        env={"RBRIDGE_AGENT_NATS_URL": server.url, "RBRIDGE_AGENT_NKEY": str(seed)},
    )  # fmt: skip
    assert by_env.returncode == 0, by_env.stderr


@pytest.mark.servers
def test_the_example_agents_fail_in_one_line_without_the_identity(
    secured: tuple[NatsServer, Path],
) -> None:
    server, _ = secured
    for module in ("edge_agent.examples.claims", "cloud_agent.examples.claims"):
        result = run(
            sys.executable, "-m", module, "--nats", server.url, env={"RBRIDGE_AGENT_NKEY": ""}
        )
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert "authorization refused" in result.stderr.splitlines()[-1]


@pytest.mark.servers
def test_a_missing_nkey_file_is_named(tmp_path: Path) -> None:
    result = run(str(RBRIDGE), "agents", "--nkey", str(tmp_path / "absent.nk"), env={})
    assert result.returncode != 0
    assert f"cannot read the nkey seed file {tmp_path / 'absent.nk'}" in result.stderr
