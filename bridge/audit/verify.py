"""Checking an audit trail: every record intact, in order, none missing, none twice, none cut."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bridge.audit.trail import ACTIVE, GENESIS, record_hash


@dataclass
class VerifyReport:
    records: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def trail_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files in chain order: a directory contributes its rotated files, then the active one."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            rotated = sorted(
                p for p in path.iterdir() if p.name.startswith("audit-") and p.suffix == ".jsonl"
            )
            files.extend(rotated)
            if (path / ACTIVE).exists():
                files.append(path / ACTIVE)
        else:
            files.append(path)
    return files


def has_trail(directory: Path) -> bool:
    return directory.is_dir() and any(
        p.name == ACTIVE or (p.name.startswith("audit-") and p.suffix == ".jsonl")
        for p in directory.iterdir()
    )


def trails_under(directory: str | Path) -> list[Path]:
    """The trails in ``directory``: its own, then each subdirectory's (one per bridge process
    when several run on one host, e.g. ``audit/9465``), each its own chain."""
    root = Path(directory)
    found = [root] if has_trail(root) else []
    found.extend(sorted(p for p in root.iterdir() if not p.is_symlink() and has_trail(p)))
    return found


def verify_paths(paths: Iterable[str | Path]) -> VerifyReport:
    """Verify the chain across ``paths`` (files or trail directories), in the order given."""
    report = VerifyReport()
    expected_prev, expected_seq = None, None
    for path in trail_files(paths):
        report.files += 1
        try:
            data = path.read_bytes()
        except OSError as error:
            report.problems.append(f"{path}: cannot read: {error.strerror}")
            continue
        lines = data.split(b"\n")
        if lines and lines[-1] != b"":
            report.problems.append(
                f"{path}:{len(lines)}: truncated record (the file does not end with a complete line)"
            )
        for number, line in enumerate(lines[:-1], start=1):
            where = f"{path}:{number}"
            try:
                record = orjson.loads(line)
                seq, prev, stated = int(record["seq"]), str(record["prev"]), str(record["hash"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                report.problems.append(f"{where}: not a valid audit record (damaged)")
                expected_prev, expected_seq = None, None
                continue
            report.records += 1
            if record_hash(record) != stated:
                report.problems.append(
                    f"{where}: record {seq} was altered (its hash does not match its content)"
                )
            if expected_seq is None:
                if prev == GENESIS and seq != 1:
                    report.problems.append(f"{where}: the chain starts at record {seq}, not 1")
            elif seq == expected_seq - 1 and prev != expected_prev:
                report.problems.append(f"{where}: record {seq} appears twice")
            elif seq != expected_seq:
                kind = "missing" if seq > expected_seq else "out of order"
                report.problems.append(
                    f"{where}: record {seq} follows {expected_seq - 1}: records {kind}"
                )
            elif prev != expected_prev:
                report.problems.append(
                    f"{where}: record {seq} does not chain to the record before it"
                )
            expected_prev, expected_seq = stated, seq + 1
    if report.files == 0:
        report.problems.append("no audit files found")
    return report
