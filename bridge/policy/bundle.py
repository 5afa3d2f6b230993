"""Signed policy bundles: the policy files, a manifest of their digests, a revision, a signature.

A bundle is one JSON file::

    {"format": "rbridge-policy-bundle/v1",
     "manifest": "<base64 of the manifest's exact bytes>",
     "signature": "<base64 Ed25519 signature of those bytes>",
     "files": {"claims.yaml": "<base64 of the file>"}}

The signature covers the manifest's bytes as stored, so there is no canonical form to get wrong;
the manifest names every file with its SHA-256 and size, the revision and the signing key's id.
Verification rejects a wrong key, a changed, added or removed file, and anything malformed.
Refusing a lower revision than the one running is the runtime's job; :attr:`VerifiedBundle.revision`
is what it compares.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bridge.errors import BundleError

FORMAT = "rbridge-policy-bundle/v1"
MAX_BUNDLE_BYTES = 16 << 20
MAX_FILES = 256
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")
PRIVATE_KEY_FILE = "policy-signing.key"
PUBLIC_KEY_FILE = "policy-signing.pub"


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    revision: int
    key_id: str
    created: str
    files: dict[str, bytes]
    #: The names of the policies the signer bundled (None in bundles made before they were
    #: signed); a runtime checks them against the policies the files hold.
    policies: tuple[str, ...] | None = None


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_bundle(
    files: dict[str, bytes],
    revision: int,
    private_key: Ed25519PrivateKey,
    policies: tuple[str, ...] | None = None,
) -> bytes:
    """The bundle bytes for ``files`` at ``revision``, signed with ``private_key``.

    ``policies`` names the policies the files hold (read from the files when omitted); the
    manifest carries them under the signature, so a bundle says which policy it is for.
    """
    if policies is None:
        policies = _policy_names(files)
    if not files:
        raise BundleError("a bundle needs at least one file")
    if len(files) > MAX_FILES:
        raise BundleError(f"a bundle holds at most {MAX_FILES} files, got {len(files)}")
    if revision < 1:
        raise BundleError(f"revision must be a positive integer, got {revision}")
    for name in files:
        if not _FILE_NAME.match(name):
            raise BundleError(
                f"file name {name!r} is not allowed in a bundle (letters, digits, '.', '-', '_')"
            )
    manifest = {
        "format": FORMAT,
        "revision": revision,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "key_id": key_id(private_key.public_key()),
        "policies": sorted(policies),
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in sorted(files.items())
        },
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    bundle = {
        "format": FORMAT,
        "manifest": base64.b64encode(manifest_bytes).decode(),
        "signature": base64.b64encode(private_key.sign(manifest_bytes)).decode(),
        "files": {name: base64.b64encode(data).decode() for name, data in sorted(files.items())},
    }
    encoded = json.dumps(bundle, indent=1).encode() + b"\n"
    if len(encoded) > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"bundle of {len(encoded)} bytes exceeds the limit of {MAX_BUNDLE_BYTES} bytes"
        )
    return encoded


def _policy_names(files: dict[str, bytes]) -> tuple[str, ...]:
    from bridge.errors import PolicyLoadError
    from bridge.policy.loader import POLICY_SUFFIXES, load_policy_bytes

    names = []
    for name, content in files.items():
        if name.endswith(POLICY_SUFFIXES):
            # A file that does not load is named by nothing; loading the bundle refuses it.
            with contextlib.suppress(PolicyLoadError):
                names.append(load_policy_bytes(name, content).policy.metadata.name)
    return tuple(names)


def verify_bundle(data: bytes, public_key: Ed25519PublicKey) -> VerifiedBundle:
    """Check ``data`` against ``public_key``; raise :class:`BundleError` saying what is wrong."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"bundle of {len(data)} bytes exceeds the limit of {MAX_BUNDLE_BYTES} bytes"
        )
    try:
        bundle = json.loads(data)
    except ValueError:
        raise BundleError("not a policy bundle: the file is not JSON") from None
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise BundleError(f"not a policy bundle: expected format {FORMAT!r}")
    manifest_bytes = _b64(bundle.get("manifest"), "manifest")
    signature = _b64(bundle.get("signature"), "signature")
    try:
        public_key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise BundleError(
            f"the signature does not verify with key {key_id(public_key)}: "
            "signed with another key, or the manifest was changed"
        ) from None
    manifest = _manifest(manifest_bytes)
    listed: dict[str, Any] = manifest["files"]
    carried = bundle.get("files")
    if not isinstance(carried, dict):
        raise BundleError("malformed bundle: 'files' is not an object")
    problems = [
        f"file {name!r} is not in the signed manifest"
        for name in sorted(set(carried) - set(listed))
    ]
    problems += [
        f"file {name!r} is in the manifest but missing"
        for name in sorted(set(listed) - set(carried))
    ]
    files: dict[str, bytes] = {}
    for name in sorted(set(listed) & set(carried)):
        content = _b64(carried[name], f"file {name!r}")
        entry = listed[name]
        if not isinstance(entry, dict) or hashlib.sha256(content).hexdigest() != entry.get(
            "sha256"
        ):
            problems.append(f"file {name!r} does not match its signed digest")
        files[name] = content
    if problems:
        raise BundleError("; ".join(problems))
    named = manifest.get("policies")
    if named is not None and (
        not isinstance(named, list) or not all(isinstance(name, str) for name in named)
    ):
        raise BundleError("malformed bundle: the manifest's policies are not a list of names")
    return VerifiedBundle(
        manifest["revision"],
        str(manifest.get("key_id", "")),
        str(manifest.get("created", "")),
        files,
        tuple(named) if named is not None else None,
    )


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BundleError(f"malformed bundle: {what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"malformed bundle: {what} is not base64") from None


def _manifest(manifest_bytes: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise BundleError("malformed bundle: the manifest is not JSON") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("revision"), int)
        or not isinstance(manifest.get("files"), dict)
    ):
        raise BundleError("malformed bundle: the manifest lacks format, revision or files")
    return manifest


def check_rollback(bundle: VerifiedBundle, running_revision: int | None) -> None:
    """Refuse a bundle older than the revision in force (re-applying the same one is fine)."""
    if running_revision is not None and bundle.revision < running_revision:
        raise BundleError(
            f"refusing rollback: bundle revision {bundle.revision} is lower than the running revision {running_revision}"
        )
