"""Shared fixtures: the bundled policies, engines with throw-away keys, message helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.natsserver import NatsServer
from bridge.policy import (
    Decision,
    Engine,
    LoadedPolicy,
    MemoryKeyRing,
    Message,
    load_policy_bytes,
    load_policy_file,
)

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"


def engine_for(loaded: LoadedPolicy, keys: MemoryKeyRing | None = None) -> Engine:
    return Engine(loaded.policy, keys or MemoryKeyRing.ephemeral(loaded.policy.spec.keys))


def policy_from_text(text: str, name: str = "inline.yaml") -> LoadedPolicy:
    return load_policy_bytes(name, text.encode())


def decide(engine: Engine, subject: str, payload: Any, **headers: str) -> Decision:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return engine.evaluate(
        Message(subject, raw, {k.replace("_", "-"): v for k, v in headers.items()})
    )


@pytest.fixture(scope="session")
def claims() -> LoadedPolicy:
    return load_policy_file(POLICIES / "claims.yaml")


@pytest.fixture
def claims_keys(claims: LoadedPolicy) -> MemoryKeyRing:
    return MemoryKeyRing.ephemeral(claims.policy.spec.keys)


@pytest.fixture
def claims_engine(claims: LoadedPolicy, claims_keys: MemoryKeyRing) -> Engine:
    return engine_for(claims, claims_keys)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream on a free loopback port, stopped after the test."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.kill()


# --- the "servers" marker ------------------------------------------------------------------
# A test that starts a process (a nats-server, the rbridge CLI, an agent) is marked "servers";
# ``scripts/check --fast`` leaves those out. Tests using a fixture that starts one are marked
# here; any other test that starts a process without the mark fails, so the mark stays true.

SERVER_FIXTURES = frozenset({"nats_server", "world"})
_MARKED = ("servers", "slow", "deploy")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(autouse=True)
def _processes_need_the_servers_mark(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if any(request.node.get_closest_marker(name) for name in _MARKED):
        return
    import subprocess

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(
            f"{request.node.nodeid} starts a process: mark it servers (pytest.mark.servers)"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
