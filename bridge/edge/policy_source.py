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

from bridge.edge.policy_state import PolicyState
from bridge.errors import BundleError, PolicyLoadError, RbridgeError
from bridge.keys import FileKeyStore
from bridge.keys.signing import load_public_key
from bridge.policy import BundledPolicies, Engine, LoadedPolicy, load_bundle, load_policy_bytes

log = logging.getLogger("rbridge.edge.policy")


@dataclass(frozen=True, slots=True)
class LoadedEngine:
    engine: Engine
    revision: int
    source: str
    bundled: bool = False
    raw: bytes = b""  # the file as read, kept as the last good copy once it runs


class PolicySource:
    def __init__(
        self,
        path: Path,
        keys: FileKeyStore,
        *,
        name: str | None = None,
        require_signature: bool = False,
        pubkey: Path | None = None,
        state_dir: Path | None = None,
        record: bool = True,
    ) -> None:
        self.path = path
        self.keys = keys
        self.name = name
        self.require_signature = require_signature
        self.pubkey = pubkey
        self.state = PolicyState.load(state_dir)
        self.record = record  # False: check only (``--check-config``), remember nothing
        self.current: LoadedEngine | None = None
        self.last_error = ""
        self.reloads = 0
        self.failures = 0
        #: Why the configured file was refused at start, while the last good policy runs.
        self.refused_configured = ""
        self._fallback_source = ""
        self._stamp: tuple[int, int, int] = (0, 0, 0)

    @property
    def engine(self) -> Engine:
        assert self.current is not None, "no policy loaded"
        return self.current.engine

    def _load(self, path: Path | None = None) -> LoadedEngine:
        """The policy at ``path`` (default: the configured file), fully checked."""
        path = self.path if path is None else path
        raw = path.read_bytes()
        if path.suffix == ".bundle":
            if self.pubkey is None:
                raise BundleError("a bundle needs policy.pubkey to verify its signature")
            running = self.current.revision if self.current is not None else None
            bundled = load_bundle(raw, load_public_key(self.pubkey), running_revision=running)
            loaded = self._chosen(bundled)
            name = loaded.policy.metadata.name
            highest = self.state.highest(name)
            if highest is not None and bundled.revision < highest:
                raise BundleError(
                    f"refusing rollback: bundle revision {bundled.revision} of policy {name!r} is "
                    f"lower than revision {highest}, applied before (recorded in {self.state.path})"
                )
            return LoadedEngine(
                Engine(loaded.policy, self.keys, revision=bundled.revision),
                bundled.revision,
                f"{path} revision {bundled.revision}",
                bundled=True,
                raw=raw,
            )
        if self.require_signature:
            raise BundleError(f"{path} is not a signed bundle and policy.require_signature is set")
        loaded = load_policy_bytes(str(path), raw)
        revision = loaded.policy.metadata.revision
        return LoadedEngine(
            Engine(loaded.policy, self.keys), revision, f"{path} revision {revision}",
            raw=raw,
        )  # fmt: skip

    @property
    def last_good_path(self) -> Path | None:
        """Where the last policy that ran is kept (None without a state directory)."""
        if self.state.path is None:
            return None
        suffix = ".bundle" if self.path.suffix == ".bundle" else ".yaml"
        return self.state.path.parent / f"last-good-policy{suffix}"

    def _chosen(self, bundled: BundledPolicies) -> LoadedPolicy:
        """The policy of the bundle this edge runs: the configured one, else the one it ran
        before (a bundle of another policy is refused), else the bundle's only policy."""
        if self.name:
            return bundled.named(self.name)
        held = [p.policy.metadata.name for p in bundled.policies]
        if self.state.policy is not None:
            if self.state.policy not in held:
                raise BundleError(
                    f"the bundle holds the policy {', '.join(map(repr, held))}, but this edge runs "
                    f"{self.state.policy!r}; to change policies, set policy.name to the new one"
                )
            return bundled.named(self.state.policy)
        if len(held) != 1:
            raise BundleError(
                f"the bundle holds several policies ({', '.join(held)}); set policy.name"
            )
        return bundled.policies[0]

    def _applied(self, candidate: LoadedEngine) -> None:
        """Record a bundle's policy and revision before it runs (rollback across restarts), and
        keep a copy of what runs, to start from when the configured file is refused."""
        if not self.record:
            return
        try:
            if candidate.bundled:
                self.state.record(candidate.engine.name, candidate.revision)
            keep = self.last_good_path
            if keep is not None and candidate.raw and candidate.source != self._fallback_source:
                _write_atomically(keep, candidate.raw)
        except OSError as error:
            raise BundleError(
                f"cannot record the applied policy in {self.state.path}: {error.strerror}"
            ) from None

    def _stamp_now(self) -> tuple[int, int, int]:
        try:
            info = os.stat(self.path)
        except OSError:
            return (-1, 0, 0)
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def load(self) -> LoadedEngine:
        """The first load. If the configured file is refused, the last good policy kept in the
        state directory runs instead (said in the log, the status line and ``/readyz``); with
        no such copy, the refusal is fatal."""
        self._stamp = self._stamp_now()
        try:
            candidate = self._load()
        except Exception as error:
            kept = self.last_good_path
            if kept is None or not kept.exists():
                raise
            reason = (
                _describe(error)
                if isinstance(error, RbridgeError | OSError)
                else (f"internal error while loading ({type(error).__name__})")
            )
            candidate = self._load(kept)
            self._fallback_source = candidate.source
            self.last_error = reason
            self.failures += 1
            self.refused_configured = reason
            log.error(
                "the configured policy %s was refused (%s); running the last good one: %s",
                self.path, reason, candidate.source,
            )  # fmt: skip
        self._applied(candidate)
        self.current = candidate
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
            self._applied(candidate)
        except Exception as error:  # any failure keeps the last good policy, and the watcher
            self.failures += 1
            self.last_error = (
                _describe(error)
                if isinstance(error, (RbridgeError, OSError))
                else f"internal error while loading ({type(error).__name__})"
            )
            log.error(
                "new policy refused, keeping %s: %s",
                self.current.source if self.current else "none",
                self.last_error,
            )
            return False
        self.current = candidate
        self.reloads += 1
        self.last_error = ""
        self.refused_configured = ""
        log.info("policy reloaded: %s", candidate.source, extra={"revision": candidate.revision})
        return True


def _describe(error: BaseException) -> str:
    if isinstance(error, PolicyLoadError):
        return f"{len(error.problems)} problem(s), first: {error.problems[0] if error.problems else ''}"
    return str(error)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
