"""Keys as the policy core sees them: named, versioned material, and how it becomes crypto.

The core never reads key files: it takes a :class:`KeyRing` (the file-based store in
:mod:`bridge.keys` is one; :class:`MemoryKeyRing` is another, for tests and for running a
policy's own test cases with throw-away keys). From each key version's material two independent
keys are derived with HKDF, one for HMAC-SHA-256 (hash) and one for AES-SIV (tokenize), so a
policy that uses one key name for both actions does not reuse key material across algorithms.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bridge.errors import UnknownKeyError

KEY_MATERIAL_BYTES = 64
_SHA256_BLOCK = 64


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One version of a named key. ``material`` never leaves the edge host."""

    name: str
    version: int
    material: bytes = field(repr=False)


class KeyRing(Protocol):
    """Where the policy core gets key material from."""

    def current(self, name: str) -> KeyVersion:
        """The newest version of ``name``; raises :class:`UnknownKeyError` if there is none."""
        ...

    def get(self, name: str, version: int) -> KeyVersion:
        """A specific version (old versions stay readable, for re-identification)."""
        ...


@dataclass(slots=True)
class MemoryKeyRing:
    """Keys held in memory."""

    versions: dict[str, dict[int, KeyVersion]] = field(default_factory=dict)

    @classmethod
    def ephemeral(cls, names: Iterable[str]) -> MemoryKeyRing:
        """Fresh random keys, version 1, for each name (they vanish with the process)."""
        ring = cls()
        for name in names:
            ring.add(KeyVersion(name, 1, os.urandom(KEY_MATERIAL_BYTES)))
        return ring

    def add(self, key: KeyVersion) -> None:
        self.versions.setdefault(key.name, {})[key.version] = key

    def current(self, name: str) -> KeyVersion:
        versions = self.versions.get(name)
        if not versions:
            raise UnknownKeyError(f"no key named {name!r}")
        return versions[max(versions)]

    def get(self, name: str, version: int) -> KeyVersion:
        try:
            return self.versions[name][version]
        except KeyError:
            raise UnknownKeyError(f"no version {version} of key {name!r}") from None


@dataclass(frozen=True, slots=True)
class CryptoKey:
    """The working keys derived from one key version."""

    name: str
    version: int
    hmac_key: bytes = field(repr=False)
    siv: AESSIV = field(repr=False)
    token_context: list[bytes] = field(repr=False, compare=False)
    _inner: Any = field(repr=False, compare=False)
    _outer: Any = field(repr=False, compare=False)

    @classmethod
    def derive(cls, key: KeyVersion) -> CryptoKey:
        if len(key.material) < 32:
            raise UnknownKeyError(
                f"key {key.name!r} version {key.version} holds too little material"
            )
        hmac_key = _hkdf(key.material, b"rbridge/v1 hash", 32)
        # HMAC's padded inner and outer states, hashed once (RFC 2104): each MAC then costs two
        # hash copies instead of re-deriving the pads, about a third of hmac.digest's time.
        padded = hmac_key.ljust(_SHA256_BLOCK, b"\0")
        inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in padded))
        outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in padded))
        siv = AESSIV(_hkdf(key.material, b"rbridge/v1 tokenize", 64))
        # Associated data binds a token to its key's name: a token made under one name does
        # not decrypt under another, even with equal material.
        context = [b"rbridge/v1 token " + key.name.encode()]
        return cls(key.name, key.version, hmac_key, siv, context, inner, outer)

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA-256 of ``data`` under this key's hash key."""
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest


def _hkdf(material: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(material)
