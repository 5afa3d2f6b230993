"""The security team's policy-signing keys on disk: made, read and checked here.

The policy core (:mod:`bridge.policy.bundle`) signs and verifies with keys it is given and does
no file I/O; the files live here, with the key store.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bridge.errors import BundleError
from bridge.policy.bundle import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE


def generate_signing_keys(directory: str | Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair (private key mode 0600); refuses to overwrite."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path, public_path = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    for path in (private_path, public_path):
        if path.exists():
            raise BundleError(f"{path} already exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key (PEM), refusing one that group or others can read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise BundleError(
                f"signing key {path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as error:
        raise BundleError(f"signing key {path}: {error.strerror}") from None
    except (ValueError, TypeError):
        raise BundleError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key (PEM)."""
    path = Path(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as error:
        raise BundleError(f"public key {path}: {error.strerror}") from None
    except (ValueError, TypeError):
        raise BundleError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path} is not an Ed25519 public key")
    return key
