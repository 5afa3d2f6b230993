"""The running policy: signed bundles required when configured, rollback refused, last good kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.edge.policy_source import PolicySource
from bridge.errors import BundleError
from bridge.keys import FileKeyStore
from bridge.policy import sign_bundle
from bridge.policy.bundle import generate_signing_keys, load_private_key
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
