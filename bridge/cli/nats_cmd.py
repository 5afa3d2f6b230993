"""``rbridge nats nkeys``: the on-prem NATS server's client identities.

Writes two nkey seeds, ``bridge.nk`` (the edge bridge) and ``agents.nk`` (local agents), mode
0600, refusing to overwrite either, and the server's ``authorization`` block trusting their
public keys. Agents may not delete, purge or reconfigure streams, nor forge quarantine copies.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import nkeys

from bridge.errors import UsageError

AGENT_DENIED_PUBLISH = (
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.UPDATE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
    "$JS.API.CONSUMER.DELETE.>",
    # RB_OUT and RB_QUARANTINE hold other agents' raw messages, and under interest retention a
    # consumer that never acks would keep RB_OUT full: only the bridge consumes or reads them.
    *(
        f"$JS.API.{api}.{stream}{tail}"
        for stream in ("RB_OUT", "RB_QUARANTINE")
        for api, tail in (
            ("CONSUMER.CREATE", ""),
            ("CONSUMER.CREATE", ".>"),
            ("CONSUMER.DURABLE.CREATE", ".>"),
            ("STREAM.MSG.GET", ""),
            ("DIRECT.GET", ""),
            ("DIRECT.GET", ".>"),
        )
    ),
    "rb.quarantine.>",
    # The bridge's record of spent reply tokens: an agent could otherwise delete an entry and
    # let a reply token be used twice.
    "$KV.rb_reply_tokens.>",
)


def register(commands: Any) -> None:
    nats = commands.add_parser("nats", help="the on-prem NATS server's set-up")
    sub = nats.add_subparsers(dest="nats_command", metavar="ACTION", parser_class=type(nats))
    sub.required = True
    make = sub.add_parser(
        "nkeys",
        help="make nkey seeds for the bridge and for agents, and the server's authorization block",
        description=__doc__,
    )
    make.add_argument("--dir", required=True, type=Path, metavar="DIR", help="where the seeds go")
    make.add_argument("--auth-conf", required=True, type=Path, metavar="FILE",
                      help="the authorization block to write (included by nats.conf)")  # fmt: skip
    make.set_defaults(run=_nkeys, command_path=["nats", "nkeys"])


def _seed(path: Path) -> str:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; remove it first to make a new identity") from None
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(seed)
    public: str = nkeys.from_seed(seed).public_key.decode()
    return public


def _nkeys(arguments: argparse.Namespace) -> int:
    directory: Path = arguments.dir
    for name in ("bridge.nk", "agents.nk"):
        if (directory / name).exists():
            raise UsageError(f"{directory / name} exists; remove it first to make a new identity")
    if not arguments.auth_conf.parent.is_dir():
        raise UsageError(f"no directory for {arguments.auth_conf}")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise UsageError(f"cannot create {directory}: {error.strerror}") from None
    bridge = _seed(directory / "bridge.nk")
    agents = _seed(directory / "agents.nk")
    denied = ", ".join(f'"{subject}"' for subject in AGENT_DENIED_PUBLISH)
    _write(
        arguments.auth_conf,
        "# Written by `rbridge nats nkeys`: the clients this NATS server accepts.\n"
        "authorization {\n"
        "  users: [\n"
        f'    {{ nkey: "{bridge}" }}  # the edge bridge ({directory / "bridge.nk"})\n'
        f'    {{ nkey: "{agents}", permissions: {{ publish: {{ deny: [{denied}] }} }} }}'
        f"  # local agents ({directory / 'agents.nk'})\n"
        "  ]\n"
        "}\n",
    )
    print(f"bridge: {bridge}\nagents: {agents}\nauthorization: {arguments.auth_conf}")
    return 0


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from None
