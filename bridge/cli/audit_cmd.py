"""``rbridge audit verify``: check the audit trail's hash chain."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bridge.audit import verify_paths
from bridge.errors import UsageError


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="check the audit trail")
    sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=type(audit))
    sub.required = True
    verify = sub.add_parser(
        "verify", help="verify the hash chain of audit files or trail directories"
    )
    verify.add_argument(
        "paths", nargs="+", metavar="PATH", help="audit files in chain order, or a trail directory"
    )
    verify.set_defaults(run=_verify, command_path=["audit", "verify"])


def _verify(arguments: argparse.Namespace) -> int:
    for path in arguments.paths:
        if not Path(path).exists():
            raise UsageError(f"no such file or directory: {path}")
    report = verify_paths(arguments.paths)
    for problem in report.problems:
        print(problem)
    verdict = "ok" if report.ok else "FAILED"
    print(
        f"{verdict}: {report.records} records in {report.files} file(s), {len(report.problems)} problem(s)"
    )
    return 0 if report.ok else 1
