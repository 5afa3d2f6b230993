"""``rbridge audit verify``: check the audit trail's hash chain."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bridge.audit import VerifyReport, trails_under, verify_paths
from bridge.errors import UsageError


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="check the audit trail")
    sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=type(audit))
    sub.required = True
    verify = sub.add_parser(
        "verify", help="verify the hash chain of audit files or trail directories"
    )
    verify.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="audit files in chain order, or a trail directory (its subdirectories' trails, one "
        "per bridge process, are verified too, each as its own chain)",
    )
    verify.set_defaults(run=_verify, command_path=["audit", "verify"])


def _verify(arguments: argparse.Namespace) -> int:
    for path in arguments.paths:
        if not Path(path).exists():
            raise UsageError(f"no such file or directory: {path}")
    first = Path(arguments.paths[0])
    trails = trails_under(first) if len(arguments.paths) == 1 and first.is_dir() else []
    if len(trails) < 2:
        report = verify_paths(arguments.paths)
        for problem in report.problems:
            print(problem)
        print(_summary(report))
        return 0 if report.ok else 1
    reports = [(trail, verify_paths([trail])) for trail in trails]
    for trail, report in reports:
        for problem in report.problems:
            print(problem)
        print(f"{trail}: {_summary(report)}")
    total = VerifyReport(
        records=sum(report.records for _, report in reports),
        files=sum(report.files for _, report in reports),
        problems=[problem for _, report in reports for problem in report.problems],
    )
    print(f"{_summary(total)} in {len(reports)} trails")
    return 0 if total.ok else 1


def _summary(report: VerifyReport) -> str:
    verdict = "ok" if report.ok else "FAILED"
    return (
        f"{verdict}: {report.records} records in {report.files} file(s), "
        f"{len(report.problems)} problem(s)"
    )
