"""The file key store: strict permissions, versions, rotation, and refusal of bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bridge.errors import KeyStoreError, UnknownKeyError
from bridge.keys import FileKeyStore
from bridge.policy.keyring import KEY_MATERIAL_BYTES


@pytest.fixture
def store(tmp_path: Path) -> FileKeyStore:
    return FileKeyStore(tmp_path / "keys")


def test_create_writes_a_private_file_in_a_private_directory(store: FileKeyStore) -> None:
    """Keys are created mode 0600 in a directory created mode 0700."""
    info = store.create("pseudonyms")
    assert (info.name, info.version) == ("pseudonyms", 1)
    assert info.path.stat().st_mode & 0o777 == 0o600
    assert store.directory.stat().st_mode & 0o777 == 0o700
    key = store.current("pseudonyms")
    assert len(key.material) == KEY_MATERIAL_BYTES
    assert "material" not in repr(key)


def test_create_refuses_an_existing_key(store: FileKeyStore) -> None:
    """A second create would orphan tokens; it is refused with the rotate hint."""
    store.create("k")
    with pytest.raises(KeyStoreError, match=r"already exists.*rotate"):
        store.create("k")


def test_rotation_adds_a_version_and_keeps_the_old_one(store: FileKeyStore) -> None:
    """After rotate, current() is the new version and get() still reads the old one."""
    store.create("k")
    first = store.current("k")
    info = store.rotate("k")
    assert info.version == 2
    assert store.current("k").version == 2
    assert store.current("k").material != first.material
    assert store.get("k", 1).material == first.material
    assert [(i.name, i.version) for i in store.list()] == [("k", 1), ("k", 2)]


def test_unknown_names_and_versions(store: FileKeyStore) -> None:
    """Missing keys raise UnknownKeyError with the command that would create them."""
    store.create("k")
    with pytest.raises(UnknownKeyError, match="rbridge keys create other"):
        store.current("other")
    with pytest.raises(UnknownKeyError, match="no version 5"):
        store.get("k", 5)
    with pytest.raises(UnknownKeyError):
        store.rotate("other")


@pytest.mark.parametrize("name", ["", "Upper", "../escape", "a b", "a" * 64, "-lead"])
def test_invalid_names_are_refused(store: FileKeyStore, name: str) -> None:
    """Key names are plain, short and cannot walk out of the directory."""
    with pytest.raises(KeyStoreError, match="invalid key name"):
        store.create(name)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_group_or_world_readable_key_files_are_refused(store: FileKeyStore, mode: int) -> None:
    """A key file others could read is refused, naming the file and the chmod that fixes it."""
    info = store.create("k")
    os.chmod(info.path, mode)
    with pytest.raises(KeyStoreError, match=rf"mode {mode:04o}.*chmod 600"):
        FileKeyStore(store.directory).current("k")


def test_group_or_world_writable_directory_is_refused(store: FileKeyStore) -> None:
    """A directory others could write to might hold a planted key."""
    store.create("k")
    os.chmod(store.directory, 0o777)
    with pytest.raises(KeyStoreError, match="writable by group or others"):
        FileKeyStore(store.directory).current("k")


def test_missing_directory(tmp_path: Path) -> None:
    """Reading from a directory that does not exist says so."""
    with pytest.raises(KeyStoreError, match="does not exist"):
        FileKeyStore(tmp_path / "nowhere").current("k")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        json.dumps({"format": "other"}),
        json.dumps({"format": "rbridge-key/v1", "name": "k", "version": 1, "material": "!!"}),
        json.dumps({"format": "rbridge-key/v1", "name": "k", "version": 1, "material": "AAAA"}),
        json.dumps({"format": "rbridge-key/v1", "name": "x", "version": 1, "material": "AAAA"}),
        json.dumps({"format": "rbridge-key/v1", "name": "k", "version": 1}),
    ],
)
def test_corrupt_key_files_are_refused(store: FileKeyStore, content: str) -> None:
    """A damaged or mislabelled key file is an error naming the file, never used as a key."""
    info = store.create("k")
    info.path.write_text(content)
    with pytest.raises(KeyStoreError, match=str(info.path)):
        FileKeyStore(store.directory).current("k")
