"""``rbridge keys``: the on-prem key store for hash and tokenize."""

from __future__ import annotations

import argparse
import os
from typing import Any

from bridge.keys import FileKeyStore

DEFAULT_KEY_DIR = "/var/lib/rbridge/keys"
KEY_DIR_ENV = "RBRIDGE_KEY_DIR"


def default_key_dir() -> str:
    return os.environ.get(KEY_DIR_ENV, DEFAULT_KEY_DIR)


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, rotate and list on-prem keys")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=type(keys))
    sub.required = True
    for name, help_text, run in (
        ("create", "write version 1 of a new key", _create),
        (
            "rotate",
            "write the next version of a key (old versions stay for re-identification)",
            _rotate,
        ),
    ):
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("name", help="key name as used in the policy's spec.keys")
        _dir_option(parser)
        parser.set_defaults(run=run, command_path=["keys", name])
    listing = sub.add_parser(
        "list", help="list the keys and versions in the store (never the material)"
    )
    _dir_option(listing)
    listing.set_defaults(run=_list, command_path=["keys", "list"])


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        default=None,
        help=f"key directory (default: ${KEY_DIR_ENV} or {DEFAULT_KEY_DIR})",
    )


def _store(arguments: argparse.Namespace) -> FileKeyStore:
    return FileKeyStore(arguments.dir or default_key_dir())


def _create(arguments: argparse.Namespace) -> int:
    info = _store(arguments).create(arguments.name)
    print(f"created key {info.name!r} version {info.version} at {info.path}")
    return 0


def _rotate(arguments: argparse.Namespace) -> int:
    info = _store(arguments).rotate(arguments.name)
    print(
        f"rotated key {info.name!r} to version {info.version} at {info.path}; older versions kept"
    )
    return 0


def _list(arguments: argparse.Namespace) -> int:
    infos = _store(arguments).list()
    if not infos:
        print(f"no keys in {arguments.dir or default_key_dir()}")
    for info in infos:
        print(f"{info.name}\tv{info.version}\t{info.created}\t{info.path}")
    return 0
