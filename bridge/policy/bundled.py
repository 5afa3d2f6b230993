"""Policies from a signed bundle, as a runtime loads them: verified, not rolled back, all valid."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bridge.errors import BundleError, PolicyLoadError, Problem
from bridge.policy.bundle import check_rollback, verify_bundle
from bridge.policy.loader import POLICY_SUFFIXES, LoadedPolicy, load_policy_bytes


@dataclass(frozen=True, slots=True)
class BundledPolicies:
    revision: int
    key_id: str
    policies: tuple[LoadedPolicy, ...]

    def named(self, name: str) -> LoadedPolicy:
        for loaded in self.policies:
            if loaded.policy.metadata.name == name:
                return loaded
        known = ", ".join(p.policy.metadata.name for p in self.policies)
        raise BundleError(f"the bundle holds no policy named {name!r} (it holds: {known})")


def load_bundle(
    data: bytes, public_key: Ed25519PublicKey, *, running_revision: int | None = None
) -> BundledPolicies:
    """Verify ``data``, refuse a rollback, and load every policy file in it.

    Nothing is returned unless all of it is good, so a caller that keeps its current policy on
    any exception never runs half of a new one. Raises :class:`BundleError` or
    :class:`PolicyLoadError`.
    """
    bundle = verify_bundle(data, public_key)
    check_rollback(bundle, running_revision)
    loaded: list[LoadedPolicy] = []
    problems: list[Problem] = []
    for name, content in sorted(bundle.files.items()):
        if not name.endswith(POLICY_SUFFIXES):
            continue
        try:
            loaded.append(load_policy_bytes(f"bundle:{name}", content))
        except PolicyLoadError as error:
            problems.extend(error.problems)
    if problems:
        raise PolicyLoadError(problems)
    if not loaded:
        raise BundleError("the bundle holds no policy files")
    held = sorted(item.policy.metadata.name for item in loaded)
    if bundle.policies is not None and sorted(bundle.policies) != held:
        raise BundleError(
            f"the bundle's manifest names the policies {sorted(bundle.policies)}, but its files "
            f"hold {held}"
        )
    return BundledPolicies(bundle.revision, bundle.key_id, tuple(loaded))
