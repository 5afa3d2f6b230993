from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.link import EdgeLink
from tests.link.helpers import STARTED, Pki


@pytest.fixture(autouse=True)
async def _stop_everything() -> AsyncIterator[None]:
    """Whatever a test started is stopped, links first, even when the test failed."""
    yield
    started, STARTED[:] = list(STARTED), []
    for item in sorted(started, key=lambda item: not isinstance(item, EdgeLink)):
        await item.stop(0)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    made = Pki(tmp_path / "pki")
    made.site("plant-a")
    made.site("plant-b")
    return made
