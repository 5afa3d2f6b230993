from __future__ import annotations

from pathlib import Path

import pytest

from tests.link.helpers import Pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    made = Pki(tmp_path / "pki")
    made.site("plant-a")
    made.site("plant-b")
    return made
