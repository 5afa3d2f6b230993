"""The running policy: signed bundles required when configured, rollback refused, last good kept."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.edge.policy_source import PolicySource
from bridge.errors import BundleError
from bridge.keys import FileKeyStore
from bridge.keys.signing import generate_signing_keys, load_private_key
from bridge.policy import sign_bundle
from tests.conftest import POLICIES


@pytest.fixture
def keys(tmp_path: Path) -> FileKeyStore:
    store = FileKeyStore(tmp_path / "keys")
    for name in ("pseudonyms", "correlation"):
        store.create(name)
    return store


def bundle(path: Path, key: Ed25519PrivateKey, revision: int, text: str | None = None) -> Path:
    files = {"claims.yaml": (text or (POLICIES / "claims.yaml").read_text()).encode()}
    staging = path.with_suffix(".tmp")
    staging.write_bytes(sign_bundle(files, revision, key))
    staging.replace(path)
    return path


def test_a_signed_bundle_loads_with_its_revision(tmp_path: Path, keys: FileKeyStore) -> None:
    private, public = generate_signing_keys(tmp_path / "signing")
    path = bundle(tmp_path / "p.bundle", load_private_key(private), 12)
    source = PolicySource(path, keys, require_signature=True, pubkey=public)
    loaded = source.load()
    assert (loaded.revision, loaded.engine.revision) == (12, 12)


def test_require_signature_refuses_a_plain_file(tmp_path: Path, keys: FileKeyStore) -> None:
    shutil.copy(POLICIES / "claims.yaml", tmp_path / "claims.yaml")
    source = PolicySource(
        tmp_path / "claims.yaml", keys, require_signature=True, pubkey=tmp_path / "x.pub"
    )
    with pytest.raises(BundleError, match="not a signed bundle"):
        source.load()


def test_tampered_wrong_key_and_older_bundles_never_replace_the_running_policy(
    tmp_path: Path, keys: FileKeyStore
) -> None:
    """Each bad candidate is refused with a reason, and revision 12 keeps running."""
    private, public = generate_signing_keys(tmp_path / "signing")
    key = load_private_key(private)
    path = bundle(tmp_path / "p.bundle", key, 12)
    source = PolicySource(path, keys, require_signature=True, pubkey=public)
    source.load()

    document = json.loads(path.read_text())
    document["files"]["claims.yaml"] = document["files"]["claims.yaml"][:-8] + "AAAAAAA="
    path.write_text(json.dumps(document))
    assert source.reload(force=True) is False
    assert "does not match its signed digest" in source.last_error

    bundle(path, Ed25519PrivateKey.generate(), 13)
    assert source.reload(force=True) is False
    assert "does not verify" in source.last_error

    bundle(path, key, 11)
    assert source.reload(force=True) is False
    assert "refusing rollback" in source.last_error

    bundle(
        path,
        key,
        13,
        (POLICIES / "claims.yaml").read_text().replace("decision: deny", "decision: maybe", 1),
    )
    assert source.reload(force=True) is False
    assert "problem" in source.last_error

    assert source.current is not None
    assert source.current.revision == 12
    assert source.failures == 4
    bundle(path, key, 13)
    assert source.reload(force=True) is True
    assert source.current.revision == 13
    assert source.last_error == ""


def test_an_unchanged_file_is_not_reloaded(tmp_path: Path, keys: FileKeyStore) -> None:
    shutil.copy(POLICIES / "claims.yaml", tmp_path / "claims.yaml")
    source = PolicySource(tmp_path / "claims.yaml", keys)
    source.load()
    assert source.reload() is False
    assert source.reloads == 0


def test_an_older_revision_is_refused_after_a_restart_too(
    tmp_path: Path, keys: FileKeyStore
) -> None:
    """The highest revision applied is kept in the state directory: a new process (a restart)
    still refuses revision 11 after 12 ran, and says where the record is."""
    private, public = generate_signing_keys(tmp_path / "signing")
    key = load_private_key(private)
    state = tmp_path / "state"
    path = bundle(tmp_path / "p.bundle", key, 12)
    PolicySource(path, keys, require_signature=True, pubkey=public, state_dir=state).load()

    bundle(path, key, 11)
    restarted = PolicySource(path, keys, require_signature=True, pubkey=public, state_dir=state)
    # The refused file does not run: the last good copy (revision 12) does, and says why.
    assert restarted.load().revision == 12
    assert re.search(r"revision 11 .* lower than revision 12, applied before", restarted.last_error)
    assert restarted.refused_configured
    assert "policy-state.json" in str(restarted.state.path)
    # Without the last good copy, the refusal is fatal.
    (state / "last-good-policy.bundle").unlink()
    with pytest.raises(BundleError, match=r"revision 11 .* lower than revision 12"):
        PolicySource(path, keys, require_signature=True, pubkey=public, state_dir=state).load()

    bundle(path, key, 12)  # the same revision again is no rollback
    again = PolicySource(path, keys, require_signature=True, pubkey=public, state_dir=state)
    assert again.load().revision == 12


def test_a_check_only_source_remembers_nothing(tmp_path: Path, keys: FileKeyStore) -> None:
    """--check-config reads the record (a rollback fails the check) but never writes it."""
    private, public = generate_signing_keys(tmp_path / "signing")
    path = bundle(tmp_path / "p.bundle", load_private_key(private), 5)
    state = tmp_path / "state"
    PolicySource(path, keys, pubkey=public, state_dir=state, record=False).load()
    assert not (state / "policy-state.json").exists()


def test_a_damaged_state_file_is_an_error_not_a_reset(tmp_path: Path, keys: FileKeyStore) -> None:
    """Resetting the record silently would allow a rollback; a damaged file stops the start."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "policy-state.json").write_text("{not json")
    with pytest.raises(BundleError, match="is damaged"):
        PolicySource(tmp_path / "p.bundle", keys, state_dir=state)


def other_policy() -> str:
    return (POLICIES / "claims.yaml").read_text().replace("name: claims", "name: claims-lab", 1)


def test_a_bundle_of_another_policy_is_refused_unless_the_setting_names_it(
    tmp_path: Path, keys: FileKeyStore
) -> None:
    """With policy.name unset, the edge keeps to the policy it runs: a signed bundle of another
    policy does not replace it (after a restart either); naming it in the setting does."""
    private, public = generate_signing_keys(tmp_path / "signing")
    key = load_private_key(private)
    state = tmp_path / "state"
    path = bundle(tmp_path / "p.bundle", key, 3)
    source = PolicySource(path, keys, pubkey=public, state_dir=state)
    assert source.load().engine.name == "claims"

    bundle(path, key, 4, other_policy())
    assert source.reload(force=True) is False
    assert "this edge runs 'claims'" in source.last_error
    assert source.engine.name == "claims"
    restarted = PolicySource(path, keys, pubkey=public, state_dir=state)
    assert restarted.load().engine.name == "claims"  # the last good copy, not the foreign one
    assert "set policy.name" in restarted.refused_configured

    chosen = PolicySource(path, keys, pubkey=public, state_dir=state, name="claims-lab")
    assert chosen.load().engine.name == "claims-lab"


def test_the_manifest_names_the_policies_and_must_agree_with_the_files(tmp_path: Path) -> None:
    """A bundle signed as 'claims' whose file holds another policy is refused."""
    from bridge.policy.bundled import load_bundle

    key = Ed25519PrivateKey.generate()
    data = sign_bundle({"claims.yaml": other_policy().encode()}, 2, key, ("claims",))
    with pytest.raises(
        BundleError, match=r"names the policies \['claims'\].*hold \['claims-lab'\]"
    ):
        load_bundle(data, key.public_key())


@pytest.mark.parametrize(
    "breakage",
    [
        # Compiles alone, not beside the built-in detectors.
        lambda text: text.replace("pattern: '\\bADJ-\\d{6}\\b'", "pattern: '\\pL{200}'"),
        # Nested far deeper than a policy needs.
        lambda text: text + "\nextra: " + "[" * 3000 + "]" * 3000 + "\n",
        # A payload limit deeper than the bridge can serialise.
        lambda text: text.replace("  defaults:", "  limits: {max_depth: 400}\n  defaults:"),
    ],
)
def test_any_broken_reload_keeps_the_last_good_policy_and_later_changes_still_apply(
    tmp_path: Path, keys: FileKeyStore, breakage: Any
) -> None:
    """A reload that fails in any way (a pattern RE2 cannot combine, nesting, a bad limit) is
    refused with a reason; the running policy stays; the next good file is applied."""
    good = (POLICIES / "claims.yaml").read_text()
    path = tmp_path / "claims.yaml"
    path.write_text(good)
    source = PolicySource(path, keys)
    source.load()
    broken = breakage(good)
    assert broken != good
    path.write_text(broken)
    assert source.reload(force=True) is False
    assert source.last_error
    assert source.engine.name == "claims"
    path.write_text(good.replace("revision: 7", "revision: 8"))
    assert source.reload(force=True) is True
    assert source.current is not None
    assert source.current.revision == 8


def test_a_refused_file_at_start_runs_the_last_good_policy_and_counts_once(
    tmp_path: Path, keys: FileKeyStore
) -> None:
    """A bad file on disk at start: the last good policy runs (kept in the state directory),
    the refusal is counted once however often the watcher looks, and fixing the file applies."""
    good = (POLICIES / "claims.yaml").read_text()
    path, state = tmp_path / "claims.yaml", tmp_path / "state"
    path.write_text(good)
    PolicySource(path, keys, state_dir=state).load()
    assert (state / "last-good-policy.yaml").read_text() == good
    path.write_text(good.replace("decision: deny", "decision: maybe", 1))
    source = PolicySource(path, keys, state_dir=state)
    assert source.load().engine.name == "claims"
    assert "bad-value" in source.refused_configured
    assert source.failures == 1
    for _ in range(5):
        assert source.reload() is False
    assert source.failures == 1
    path.write_text(good.replace("revision: 7", "revision: 9", 1))
    assert source.reload() is True
    assert source.refused_configured == ""
    assert "revision: 9" in (state / "last-good-policy.yaml").read_text()
