"""Signed bundles: sign, verify, and every way a bundle can be wrong."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.errors import BundleError, PolicyLoadError
from bridge.keys.signing import generate_signing_keys, load_private_key, load_public_key
from bridge.policy import sign_bundle, verify_bundle
from bridge.policy.bundle import MAX_BUNDLE_BYTES, key_id
from bridge.policy.bundled import load_bundle
from tests.conftest import POLICIES

FILES = {"claims.yaml": b"kind: ResidencyPolicy\n", "hr.yaml": b"kind: ResidencyPolicy\n# hr\n"}
KEY = Ed25519PrivateKey.generate()


def signed(revision: int = 3) -> dict[str, Any]:
    return json.loads(sign_bundle(FILES, revision, KEY))  # type: ignore[no-any-return]


def encode(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle).encode()


def test_a_signed_bundle_verifies_and_reports_its_revision() -> None:
    """The files come back byte for byte, with revision and key id."""
    bundle = verify_bundle(sign_bundle(FILES, 3, KEY), KEY.public_key())
    assert bundle.revision == 3
    assert bundle.files == FILES
    assert bundle.key_id == key_id(KEY.public_key())


def test_a_changed_file_is_rejected() -> None:
    """One flipped byte in a file breaks its signed digest."""
    bundle = signed()
    bundle["files"]["hr.yaml"] = base64.b64encode(b"kind: ResidencyPolicy\n# HR\n").decode()
    with pytest.raises(BundleError, match=r"'hr.yaml' does not match its signed digest"):
        verify_bundle(encode(bundle), KEY.public_key())


def test_an_added_file_is_rejected() -> None:
    """A file that the manifest does not list is rejected."""
    bundle = signed()
    bundle["files"]["extra.yaml"] = base64.b64encode(b"x").decode()
    with pytest.raises(BundleError, match=r"'extra.yaml' is not in the signed manifest"):
        verify_bundle(encode(bundle), KEY.public_key())


def test_a_removed_file_is_rejected() -> None:
    """A file that the manifest lists but the bundle lacks is rejected."""
    bundle = signed()
    del bundle["files"]["claims.yaml"]
    with pytest.raises(BundleError, match=r"'claims.yaml' is in the manifest but missing"):
        verify_bundle(encode(bundle), KEY.public_key())


def test_a_wrong_key_is_rejected() -> None:
    """Verification with another public key fails and names that key."""
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(BundleError, match=f"does not verify with key {key_id(other)}"):
        verify_bundle(sign_bundle(FILES, 3, KEY), other)


def test_a_changed_manifest_is_rejected() -> None:
    """Raising the revision in the manifest invalidates the signature."""
    bundle = signed(3)
    manifest = json.loads(base64.b64decode(bundle["manifest"]))
    manifest["revision"] = 99
    bundle["manifest"] = base64.b64encode(json.dumps(manifest).encode()).decode()
    with pytest.raises(BundleError, match="does not verify"):
        verify_bundle(encode(bundle), KEY.public_key())


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[]", "expected format"),
        (b'{"format": "rbridge-policy-bundle/v1"}', "manifest is missing"),
        (
            b'{"format": "rbridge-policy-bundle/v1", "manifest": "%%%", "signature": "AA=="}',
            "not base64",
        ),
        (b" " * (MAX_BUNDLE_BYTES + 1), "exceeds the limit"),
    ],
)
def test_malformed_bundles_are_rejected(data: bytes, fragment: str) -> None:
    """Garbage is a BundleError with a reason, never a traceback."""
    with pytest.raises(BundleError, match=fragment):
        verify_bundle(data, KEY.public_key())


def test_signing_refuses_bad_input() -> None:
    """No files, a non-positive revision, or a path-like file name: refused."""
    with pytest.raises(BundleError, match="at least one file"):
        sign_bundle({}, 1, KEY)
    with pytest.raises(BundleError, match="positive"):
        sign_bundle(FILES, 0, KEY)
    with pytest.raises(BundleError, match="not allowed"):
        sign_bundle({"../etc/passwd": b"x"}, 1, KEY)


def test_keygen_writes_a_usable_pair_and_refuses_to_overwrite(tmp_path: Path) -> None:
    """The private key is 0600; the pair signs and verifies; a second keygen is refused."""
    private_path, public_path = generate_signing_keys(tmp_path / "k")
    assert private_path.stat().st_mode & 0o777 == 0o600
    data = sign_bundle(FILES, 1, load_private_key(private_path))
    assert verify_bundle(data, load_public_key(public_path)).revision == 1
    with pytest.raises(BundleError, match="refusing to overwrite"):
        generate_signing_keys(tmp_path / "k")


def test_loading_keys_refuses_unsafe_or_wrong_files(tmp_path: Path) -> None:
    """A readable private key, a non-PEM file or a non-Ed25519 key: clear errors."""
    private_path, _public = generate_signing_keys(tmp_path)
    os.chmod(private_path, 0o644)
    with pytest.raises(BundleError, match="readable by group or others"):
        load_private_key(private_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    os.chmod(garbage, 0o600)
    with pytest.raises(BundleError, match="not an unencrypted PEM private key"):
        load_private_key(garbage)
    with pytest.raises(BundleError, match="not a PEM public key"):
        load_public_key(garbage)
    with pytest.raises(BundleError, match="No such file"):
        load_public_key(tmp_path / "absent.pub")


def test_load_bundle_verifies_loads_and_refuses_rollback() -> None:
    """A runtime gets every policy of a good bundle, and nothing from an older one."""
    files = {path.name: path.read_bytes() for path in sorted(POLICIES.glob("*.yaml"))}
    data = sign_bundle(files, 5, KEY)
    bundled = load_bundle(data, KEY.public_key(), running_revision=5)
    assert bundled.revision == 5
    assert bundled.named("claims").policy.metadata.name == "claims"
    with pytest.raises(BundleError, match="no policy named 'billing'"):
        bundled.named("billing")
    with pytest.raises(
        BundleError,
        match="refusing rollback: bundle revision 5 is lower than the running revision 6",
    ):
        load_bundle(data, KEY.public_key(), running_revision=6)


def test_load_bundle_refuses_a_signed_but_invalid_policy() -> None:
    """Signing does not make a policy valid: a bad file fails the whole bundle."""
    data = sign_bundle({"bad.yaml": b"kind: [\n"}, 1, KEY)
    with pytest.raises(PolicyLoadError, match=r"bundle:bad\.yaml"):
        load_bundle(data, KEY.public_key())
