"""What the edge remembers about its policy across restarts: which policy, and how new.

Refusing a rollback only while running is not enough: after a restart, the running revision is
gone, and an older signed bundle would be accepted again. The highest revision applied of each
policy, and the name of the policy this edge runs, are therefore kept in a small JSON file in the
state directory, written atomically (temporary file, fsync, rename) before a new bundle is used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import BundleError

STATE_FILE = "policy-state.json"


@dataclass(slots=True)
class PolicyState:
    """The running policy's name and the highest revision applied, by policy name."""

    path: Path | None
    policy: str | None = None
    revisions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path | None) -> PolicyState:
        """The state kept in ``directory`` (nothing kept when None); a damaged file is an
        error, never a silent reset (a reset would allow a rollback)."""
        if directory is None:
            return cls(None)
        path = directory / STATE_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        except OSError as error:
            raise BundleError(f"cannot read the policy state {path}: {error.strerror}") from None
        try:
            data = json.loads(raw)
            policy = data["policy"]
            revisions = {str(name): int(value) for name, value in data["revisions"].items()}
            if policy is not None and not isinstance(policy, str):
                raise TypeError("policy")
        except (ValueError, TypeError, KeyError, AttributeError):
            raise BundleError(
                f"the policy state {path} is damaged; restore it, or remove it knowing that the "
                "edge then accepts any signed revision again"
            ) from None
        return cls(path, policy, revisions)

    def highest(self, policy: str) -> int | None:
        return self.revisions.get(policy)

    def record(self, policy: str, revision: int) -> None:
        """Remember that ``policy`` at ``revision`` is applied (raises OSError if it cannot)."""
        changed = self.policy != policy or revision > self.revisions.get(policy, -1)
        if not changed or self.path is None:
            self.policy = policy
            return
        revisions = dict(self.revisions)
        revisions[policy] = max(revision, revisions.get(policy, revision))
        text = json.dumps({"policy": policy, "revisions": revisions}, indent=1, sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self.policy = policy
        self.revisions = revisions
