"""The generated wire code is what the .proto says, and only bridge.link uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

GENERATED = ["link_pb2.py", "link_pb2.pyi", "link_pb2_grpc.py", "link_pb2_grpc.pyi"]


@pytest.mark.servers
def test_generated_code_is_fresh(tmp_path: Path) -> None:
    """Regenerating from proto/ gives the committed files; if not, run scripts/gen-proto."""
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
            f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}",
            f"--mypy_out={tmp_path}", f"--mypy_grpc_out={tmp_path}",
            str(ROOT / "proto" / "bridge" / "link" / "v1" / "link.proto"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    for name in GENERATED:
        fresh = (tmp_path / "bridge" / "link" / "v1" / name).read_text()
        committed = (ROOT / "bridge" / "link" / "v1" / name).read_text()
        assert committed == fresh, f"bridge/link/v1/{name} is stale: run scripts/gen-proto"


def test_the_package_path_is_the_import_path() -> None:
    """The generated gRPC module imports its messages by the package path, unchanged."""
    text = (ROOT / "bridge" / "link" / "v1" / "link_pb2_grpc.py").read_text()
    assert "from bridge.link.v1 import link_pb2" in text
