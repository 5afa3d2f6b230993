"""Key material in files, one file per key version: ``<dir>/<name>.v<version>.key``.

A key file holds one JSON object with the material in base64. The store refuses to read a key
file that its group or others may read, and a directory that its group or others may write:
a key that others could have read is no longer a secret, and a directory that others could
write to could be holding a planted key. Old versions stay, so tokens made before a rotation
can still be re-identified; new transforms always use the newest version.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bridge.errors import KeyStoreError, UnknownKeyError
from bridge.policy.keyring import KEY_MATERIAL_BYTES, KeyVersion

FORMAT = "rbridge-key/v1"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
_FILE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_\-]{0,62})\.v(?P<version>[1-9]\d{0,5})\.key$")
MAX_KEY_FILE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key: never its material."""

    name: str
    version: int
    path: Path
    created: str


class FileKeyStore:
    """A directory of key files; satisfies :class:`bridge.policy.keyring.KeyRing`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[tuple[str, int], KeyVersion] = {}

    # --- reading -------------------------------------------------------------------------

    def _check_directory(self) -> None:
        try:
            info = self.directory.stat()
        except FileNotFoundError:
            raise KeyStoreError(f"key directory {self.directory} does not exist") from None
        except OSError as error:
            raise KeyStoreError(f"key directory {self.directory}: {error.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise KeyStoreError(f"{self.directory} is not a directory")
        if info.st_mode & 0o022:
            raise KeyStoreError(
                f"key directory {self.directory} is writable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 700 {self.directory}"
            )

    def versions(self, name: str) -> list[int]:
        """The versions of ``name`` present in the store, oldest first."""
        self._check_directory()
        found = []
        for entry in self.directory.iterdir():
            match = _FILE.match(entry.name)
            if match and match["name"] == name:
                found.append(int(match["version"]))
        return sorted(found)

    def list(self) -> list[KeyInfo]:
        """Every key version in the store (material not read beyond its header)."""
        self._check_directory()
        infos = []
        for entry in sorted(self.directory.iterdir()):
            match = _FILE.match(entry.name)
            if match:
                _, created = self._read(entry, match["name"], int(match["version"]))
                infos.append(KeyInfo(match["name"], int(match["version"]), entry, created))
        return sorted(infos, key=lambda info: (info.name, info.version))

    def current(self, name: str) -> KeyVersion:
        versions = self.versions(name)
        if not versions:
            raise UnknownKeyError(
                f"no key named {name!r} in {self.directory}; create it with: rbridge keys create {name}"
            )
        return self.get(name, versions[-1])

    def get(self, name: str, version: int) -> KeyVersion:
        cached = self._cache.get((name, version))
        if cached is not None:
            return cached
        self._check_directory()
        path = self._path(name, version)
        if not path.exists():
            raise UnknownKeyError(f"no version {version} of key {name!r} in {self.directory}")
        material, _ = self._read(path, name, version)
        key = KeyVersion(name, version, material)
        self._cache[(name, version)] = key
        return key

    def _path(self, name: str, version: int) -> Path:
        return self.directory / f"{name}.v{version}.key"

    def _read(self, path: Path, name: str, version: int) -> tuple[bytes, str]:
        try:
            info = path.stat()
            if info.st_mode & 0o077:
                raise KeyStoreError(
                    f"key file {path} is readable or writable by group or others "
                    f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
                )
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_KEY_FILE_BYTES:
                raise KeyStoreError(f"key file {path} is not a small regular file")
            record = json.loads(path.read_bytes())
        except OSError as error:
            raise KeyStoreError(f"key file {path}: {error.strerror}") from None
        except ValueError:
            raise KeyStoreError(f"key file {path} is not a valid key file") from None
        try:
            if (
                record.get("format") != FORMAT
                or record.get("name") != name
                or record.get("version") != version
            ):
                raise KeyStoreError(f"key file {path} does not hold {name!r} version {version}")
            material = base64.b64decode(record["material"], validate=True)
            created = str(record.get("created", ""))
        except (AttributeError, KeyError, TypeError, binascii.Error):
            raise KeyStoreError(f"key file {path} is not a valid key file") from None
        if len(material) != KEY_MATERIAL_BYTES:
            raise KeyStoreError(
                f"key file {path} holds {len(material)} bytes of material, not {KEY_MATERIAL_BYTES}"
            )
        return material, created

    # --- writing -------------------------------------------------------------------------

    def create(self, name: str) -> KeyInfo:
        """Write version 1 of a new key; refuses if any version of ``name`` exists."""
        self._prepare(name)
        if self.versions(name):
            raise KeyStoreError(
                f"key {name!r} already exists in {self.directory}; use: rbridge keys rotate {name}"
            )
        return self._write(name, 1)

    def rotate(self, name: str) -> KeyInfo:
        """Write the next version of an existing key; older versions are kept."""
        self._prepare(name)
        versions = self.versions(name)
        if not versions:
            raise UnknownKeyError(f"no key named {name!r} in {self.directory}; create it first")
        return self._write(name, versions[-1] + 1)

    def _prepare(self, name: str) -> None:
        if not _NAME.match(name):
            raise KeyStoreError(
                f"invalid key name {name!r}: use lower-case letters, digits, '-' and '_' (at most 63)"
            )
        if not self.directory.exists():
            self.directory.mkdir(mode=0o700, parents=True)
        self._check_directory()

    def _write(self, name: str, version: int) -> KeyInfo:
        path = self._path(name, version)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        record = {
            "format": FORMAT,
            "name": name,
            "version": version,
            "created": created,
            "material": base64.b64encode(os.urandom(KEY_MATERIAL_BYTES)).decode(),
        }
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyStoreError(f"key file {path} already exists") from None
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return KeyInfo(name, version, path, created)
