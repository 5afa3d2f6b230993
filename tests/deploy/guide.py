"""The install guide's steps as the deploy tests run them: the shell blocks of
``deploy/README.md`` marked ``<!-- step: NAME -->``, word for word."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

from tests.deploy.podman import ROOT, run

GUIDE = ROOT / "deploy" / "README.md"
_STEP = re.compile(r"<!-- step: ([a-z0-9-]+) -->\n```sh\n(.*?)```", re.S)


def steps() -> dict[str, str]:
    """Every marked step of the guide, by name, in the guide's order."""
    found: dict[str, str] = {}
    for name, script in _STEP.findall(GUIDE.read_text()):
        assert name not in found, f"the step {name!r} is in the guide twice"
        found[name] = script
    return found


@dataclass
class Guide:
    """Runs the guide's steps with bash (``set -euo pipefail``), in a container or on this
    host, and remembers which ran, so a test can show it followed every one."""

    container: str | None = None
    workdir: str = "/root"
    environment: dict[str, str] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps = steps()

    def script(self, name: str, replace: dict[str, str] | None = None) -> str:
        script = self.steps[name]
        for old, new in (replace or {}).items():
            assert old in script, f"the step {name!r} no longer says {old!r}"
            script = script.replace(old, new)
        return script

    def run(
        self,
        name: str,
        *,
        replace: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run one step; with ``check``, fail showing its output unless it exits 0."""
        script = self.script(name, replace)
        self.done.append(name)
        shell = ["bash", "-euo", "pipefail", "-c", script]
        if self.container is not None:
            environment = [f"--env={key}={value}" for key, value in self.environment.items()]
            command = ["podman", "exec", "-w", self.workdir, *environment, self.container, *shell]
            return run(*command, check=check, timeout=timeout)
        result = subprocess.run(
            shell, cwd=self.workdir, capture_output=True, text=True, timeout=timeout,
            env=self.environment, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"the step {name!r} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-3000:]}"
            )
        return result
