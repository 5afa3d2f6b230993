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
