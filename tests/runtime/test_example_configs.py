"""The example configurations in deploy/config/ are valid settings."""

from __future__ import annotations

import pytest

from bridge.cloud.config import CloudSettings
from bridge.edge.config import EdgeSettings
from tests.conftest import ROOT


def test_example_edge_config_is_valid() -> None:
    settings = EdgeSettings.load(ROOT / "deploy" / "config" / "edge.yaml")
    assert settings.site == "plant-a"
    assert settings.policy.require_signature


def test_example_cloud_config_is_valid() -> None:
    settings = CloudSettings.load(ROOT / "deploy" / "config" / "cloud.yaml")
    assert set(settings.sites) == {"plant-a", "plant-b"}


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """RBRIDGE_… variables win over the YAML file, nested keys with '__'."""
    monkeypatch.setenv("RBRIDGE_NATS__URL", "nats://10.0.0.9:4222")
    monkeypatch.setenv("RBRIDGE_SITE", "plant-z")
    settings = EdgeSettings.load(ROOT / "deploy" / "config" / "edge.yaml")
    assert settings.nats.url == "nats://10.0.0.9:4222"
    assert settings.site == "plant-z"
