"""The running policy: loaded from a file or a signed bundle, swapped whole, never half.

A new policy replaces the running one only when it loads completely (parsed, validated, keys
found, and for bundles signed by the configured key and not older than the running revision);
otherwise the last good policy keeps running and the failure is reported. Each batch of
messages takes the engine reference once, so no message is evaluated by a half-loaded policy.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import BundleError, PolicyLoadError, RbridgeError
from bridge.keys import FileKeyStore
from bridge.policy import Engine, load_bundle, load_policy_file
from bridge.policy.bundle import load_public_key

log = logging.getLogger("rbridge.edge.policy")


@dataclass(frozen=True, slots=True)
class LoadedEngine:
    engine: Engine
    revision: int
    source: str


class PolicySource:
    def __init__(
        self,
        path: Path,
        keys: FileKeyStore,
        *,
        name: str | None = None,
        require_signature: bool = False,
        pubkey: Path | None = None,
    ) -> None:
        self.path = path
        self.keys = keys
        self.name = name
        self.require_signature = require_signature
        self.pubkey = pubkey
        self.current: LoadedEngine | None = None
        self.last_error = ""
        self.reloads = 0
        self.failures = 0
        self._stamp: tuple[int, int, int] = (0, 0, 0)

    @property
    def engine(self) -> Engine:
        assert self.current is not None, "no policy loaded"
        return self.current.engine

    def _is_bundle(self) -> bool:
        return self.path.suffix == ".bundle"

    def _load(self) -> LoadedEngine:
        if self._is_bundle():
            if self.pubkey is None:
                raise BundleError("a bundle needs policy.pubkey to verify its signature")
            running = self.current.revision if self.current is not None else None
            bundled = load_bundle(
                self.path.read_bytes(), load_public_key(self.pubkey), running_revision=running
            )
            if self.name is None and len(bundled.policies) != 1:
                names = ", ".join(p.policy.metadata.name for p in bundled.policies)
                raise BundleError(f"the bundle holds several policies ({names}); set policy.name")
            loaded = bundled.named(self.name) if self.name else bundled.policies[0]
            return LoadedEngine(
                Engine(loaded.policy, self.keys, revision=bundled.revision),
                bundled.revision,
                f"{self.path} revision {bundled.revision}",
            )
        if self.require_signature:
            raise BundleError(
                f"{self.path} is not a signed bundle and policy.require_signature is set"
            )
        loaded = load_policy_file(self.path)
        revision = loaded.policy.metadata.revision
        return LoadedEngine(
            Engine(loaded.policy, self.keys), revision, f"{self.path} revision {revision}"
        )

    def _stamp_now(self) -> tuple[int, int, int]:
        try:
            info = os.stat(self.path)
        except OSError:
            return (-1, 0, 0)
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def load(self) -> LoadedEngine:
        """The first load: failure here is fatal (there is no last good policy to keep)."""
        self._stamp = self._stamp_now()
        self.current = self._load()
        log.info(
            "policy loaded: %s", self.current.source, extra={"revision": self.current.revision}
        )
        return self.current

    def reload(self, *, force: bool = False) -> bool:
        """Load again if the file changed (or ``force``); True when a new policy took over."""
        stamp = self._stamp_now()
        if not force and stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            candidate = self._load()
        except (RbridgeError, OSError) as error:
            self.failures += 1
            self.last_error = _describe(error)
            log.error(
                "new policy refused, keeping %s: %s",
                self.current.source if self.current else "none",
                self.last_error,
            )
            return False
        self.current = candidate
        self.reloads += 1
        self.last_error = ""
        log.info("policy reloaded: %s", candidate.source, extra={"revision": candidate.revision})
        return True


def _describe(error: BaseException) -> str:
    if isinstance(error, PolicyLoadError):
        return f"{len(error.problems)} problem(s), first: {error.problems[0] if error.problems else ''}"
    return str(error)
