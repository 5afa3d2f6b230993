"""``rbridge cloud`` and ``rbridge edge``: run a runtime, or only check its configuration."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bridge.errors import UsageError
from bridge.runtime.config import ConfigError


def register(commands: Any) -> None:
    cloud = commands.add_parser("cloud", help="run the cloud gateway")
    cloud.add_argument(
        "--config", metavar="FILE", help="YAML settings (RBRIDGE_… variables override them)"
    )
    cloud.add_argument("--check-config", action="store_true", help="validate the settings and exit")
    cloud.set_defaults(run=_cloud, command_path=["cloud"])
    edge = commands.add_parser("edge", help="run the edge bridge")
    edge.add_argument(
        "--config", metavar="FILE", help="YAML settings (RBRIDGE_… variables override them)"
    )
    edge.add_argument(
        "--check-config",
        action="store_true",
        help="validate the settings, policy, keys and TLS files, and exit",
    )
    edge.set_defaults(run=_edge, command_path=["edge"])


def _problems(error: ConfigError) -> UsageError:
    return UsageError("invalid configuration:\n  " + "\n  ".join(error.problems))


def _cloud(arguments: argparse.Namespace) -> int:
    from bridge.cloud.app import run
    from bridge.cloud.config import CloudSettings
    from bridge.runtime import logs

    try:
        settings = CloudSettings.load(arguments.config)
    except ConfigError as error:
        raise _problems(error) from None
    missing = [
        str(path)
        for path in (settings.tls.cert, settings.tls.key, settings.tls.ca)
        if not path.exists()
    ]
    if missing:
        raise UsageError(f"TLS files not found: {', '.join(missing)}")
    if arguments.check_config:
        print(
            f"ok: cloud gateway for sites {', '.join(sorted(settings.sites))}, link on {settings.listen}"
        )
        return 0
    logs.configure(settings.log_level)
    asyncio.run(run(settings))
    return 0


def _edge(arguments: argparse.Namespace) -> int:
    from bridge.edge.app import run
    from bridge.edge.config import EdgeSettings
    from bridge.edge.policy_source import PolicySource
    from bridge.keys import FileKeyStore
    from bridge.link.tls import TLSFiles, load_material
    from bridge.runtime import logs

    try:
        settings = EdgeSettings.load(arguments.config)
    except ConfigError as error:
        raise _problems(error) from None
    load_material(TLSFiles(settings.tls.cert, settings.tls.key, settings.tls.ca))
    keys = FileKeyStore(settings.keys_dir)
    keys.current(settings.replies.key)
    source = PolicySource(
        settings.policy.path, keys, name=settings.policy.name,
        require_signature=settings.policy.require_signature, pubkey=settings.policy.pubkey,
    )  # fmt: skip
    loaded = source.load()
    if arguments.check_config:
        print(
            f"ok: edge bridge for site {settings.site}, policy {loaded.source}, destinations {', '.join(sorted(settings.destinations))}"
        )
        return 0
    logs.configure(settings.log_level)
    asyncio.run(run(settings))
    return 0
