from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.link.conftest import _stop_everything, pki
from tests.link.helpers import Pki
from tests.runtime.world import World, make_world

__all__ = ["_stop_everything", "pki", "world"]


@pytest.fixture
async def world(tmp_path: Path, pki: Pki) -> AsyncIterator[World]:
    """Two real nats-servers and a key store; gateways and edges started by the test are stopped."""
    made = make_world(tmp_path / "world", pki)
    try:
        yield made
    finally:
        await made.stop()
        made.edge_nats.kill()
        made.cloud_nats.kill()
