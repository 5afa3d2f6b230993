"""Running containers in the deploy tests: podman, or a clear failure.

Where a machine cannot run containers, the tests fail saying so, unless
``RBRIDGE_ALLOW_NO_CONTAINERS=1`` allows them to be skipped (CI does not set it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "deploy" / "cloud" / "containers.conf"


def environment() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def require_containers() -> None:
    """Fail (or skip, if explicitly allowed) when podman cannot run a container here."""
    problem = None
    if shutil.which("podman") is None:
        problem = "podman is not installed (scripts/setup-system installs it)"
    elif os.geteuid() != 0:
        problem = "the deploy tests need root (debootstrap, privileged systemd containers)"
    else:
        probe = subprocess.run(
            ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
            capture_output=True,
            text=True,
            env=environment(),
        )
        if probe.returncode != 0:
            problem = f"podman cannot run here: {probe.stderr.strip()[:200]}"
    if problem is None:
        return
    if os.environ.get("RBRIDGE_ALLOW_NO_CONTAINERS") == "1":
        pytest.skip(f"containers unavailable and RBRIDGE_ALLOW_NO_CONTAINERS=1: {problem}")
    pytest.fail(f"containers unavailable: {problem} (set RBRIDGE_ALLOW_NO_CONTAINERS=1 to skip)")


def run(
    *command: str, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root, with the containers configuration."""
    result = subprocess.run(
        list(command), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=environment()
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


class Container:
    """A running container, driven with podman exec/cp."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sh(self, script: str, *, check: bool = True, timeout: float = 300) -> str:
        return run(
            "podman", "exec", self.name, "sh", "-c", script, check=check, timeout=timeout
        ).stdout

    def put(self, source: Path, target: str) -> None:
        run("podman", "cp", str(source), f"{self.name}:{target}")

    def get(self, source: str, target: Path) -> None:
        run("podman", "cp", f"{self.name}:{source}", str(target))

    def remove(self) -> None:
        run("podman", "rm", "-f", "-t", "5", self.name, check=False)
