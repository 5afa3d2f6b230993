"""``rbridge cloud`` and ``rbridge edge``: run a runtime, or only check its configuration."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TypeVar

from bridge.errors import RbridgeError, UsageError
from bridge.runtime.config import ConfigError, RuntimeSettings

S = TypeVar("S", bound=RuntimeSettings)


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
    edge.add_argument(
        "--check-policy",
        action="store_true",
        help="check the configured policy file as a reload would, and exit 1 if it would be "
        "refused (systemctl reload runs this before signalling the bridge)",
    )
    edge.set_defaults(run=_edge, command_path=["edge"])


def _load(kind: type[S], path: str | None) -> S:
    """Settings from the file and the environment, or a usage error listing every problem."""
    try:
        return kind.load(path)
    except ConfigError as error:
        raise UsageError("invalid configuration:\n  " + "\n  ".join(error.problems)) from None


def _cloud(arguments: argparse.Namespace) -> int:
    from bridge.cloud.app import run
    from bridge.cloud.config import CloudSettings
    from bridge.link.tls import TLSFiles, load_material
    from bridge.runtime import logs

    settings = _load(CloudSettings, arguments.config)
    load_material(TLSFiles(settings.tls.cert, settings.tls.key, settings.tls.ca))
    if arguments.check_config:
        print(
            f"ok: cloud gateway for sites {', '.join(sorted(settings.sites))}, link on {settings.listen}"
        )
        return 0
    logs.configure(settings.log_level)
    asyncio.run(run(settings))
    return 0


def _edge(arguments: argparse.Namespace) -> int:
    from bridge.edge.app import check_destinations, run
    from bridge.edge.config import EdgeSettings
    from bridge.edge.policy_source import PolicySource
    from bridge.keys import FileKeyStore
    from bridge.link.tls import TLSFiles, load_material
    from bridge.runtime import logs

    settings = _load(EdgeSettings, arguments.config)
    load_material(TLSFiles(settings.tls.cert, settings.tls.key, settings.tls.ca))
    keys = FileKeyStore(settings.keys_dir)
    keys.current(settings.replies.key)
    if not (arguments.check_policy or arguments.check_config):
        # The edge loads (and records) the policy itself as it starts: once, not twice.
        logs.configure(settings.log_level)
        asyncio.run(run(settings))
        return 0
    source = PolicySource(
        settings.policy.path, keys, name=settings.policy.name,
        require_signature=settings.policy.require_signature, pubkey=settings.policy.pubkey,
        state_dir=settings.state_directory, record=False,
    )  # fmt: skip
    loaded = source.load()
    check_destinations(settings, loaded.engine.policy)
    if arguments.check_policy:
        if source.refused_configured:
            raise RbridgeError(
                f"the policy {settings.policy.path} would be refused: {source.refused_configured}; "
                f"the running policy stays"
            )
        print(f"ok: {loaded.source} would be applied")
        return 0
    if arguments.check_config:
        print(
            f"ok: edge bridge for site {settings.site}, policy {loaded.source}, destinations {', '.join(sorted(settings.destinations))}"
        )
        if source.refused_configured:
            print(
                f"warning: the configured policy {settings.policy.path} is refused "
                f"({source.refused_configured}); the edge would start with the last good one",
                file=sys.stderr,
            )
    return 0
