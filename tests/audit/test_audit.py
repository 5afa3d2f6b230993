"""The audit trail: chained, flushed, rotated, resumed, and every kind of tampering found."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bridge.audit import AuditInUseError, AuditTrail, AuditWriteError, verify_paths
from bridge.audit.trail import ACTIVE, GENESIS


def entry(number: int) -> dict[str, object]:
    return {
        "msg_id": f"m-{number}",
        "subject": "docs.parse",
        "decision": "allow",
        "rule": "claim-documents-to-eu-parser",
        "transforms": [{"path": "$.claimant.ssn", "action": "drop", "places": 1}],
        "input_sha256": "a" * 64,
        "output_sha256": "b" * 64,
        "revision": 7,
    }


OPEN: list[AuditTrail] = []


@pytest.fixture(autouse=True)
def _close_trails() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def opened(tmp_path: Path, **options: object) -> AuditTrail:
    trail = AuditTrail(tmp_path, **options)  # type: ignore[arg-type]
    OPEN.append(trail)
    return trail


def written(tmp_path: Path, count: int = 10, **options: object) -> AuditTrail:
    trail = opened(tmp_path, **options)
    for number in range(count):
        trail.append([entry(number)])
    return trail


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_records_are_chained_and_verify(tmp_path: Path) -> None:
    """Each record holds the previous one's hash; an untouched trail verifies."""
    trail = written(tmp_path)
    records = [orjson.loads(line) for line in lines_of(tmp_path / ACTIVE)]
    assert [r["seq"] for r in records] == list(range(1, 11))
    assert records[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(records))
    assert trail.seq == 10
    report = verify_paths([tmp_path])
    assert report.ok, report.problems
    assert report.records == 10


def test_append_flushes_before_returning(tmp_path: Path) -> None:
    """What append() returned for is on disk for any other reader at once."""
    trail = opened(tmp_path)
    trail.append([entry(1), entry(2)])
    assert len(lines_of(tmp_path / ACTIVE)) == 2


def tamper(tmp_path: Path, change: object) -> list[str]:
    path = tmp_path / ACTIVE
    lines = lines_of(path)
    change(lines)  # type: ignore[operator]
    path.write_bytes(b"".join(lines))
    return verify_paths([tmp_path]).problems


def test_a_flipped_byte_is_found_and_placed(tmp_path: Path) -> None:
    """Changing one character of one record is reported with its line."""
    written(tmp_path)

    def flip(lines: list[bytes]) -> None:
        lines[4] = lines[4].replace(b"claim-documents", b"claim-d0cuments")

    problems = tamper(tmp_path, flip)
    assert problems == [
        f"{tmp_path / ACTIVE}:5: record 5 was altered (its hash does not match its content)"
    ]


def test_a_deleted_record_is_found(tmp_path: Path) -> None:
    written(tmp_path)
    problems = tamper(tmp_path, lambda lines: lines.pop(3))
    assert problems == [f"{tmp_path / ACTIVE}:4: record 5 follows 3: records missing"]


def test_reordered_records_are_found(tmp_path: Path) -> None:
    written(tmp_path)

    def swap(lines: list[bytes]) -> None:
        lines[2], lines[3] = lines[3], lines[2]

    problems = tamper(tmp_path, swap)
    assert problems[0] == f"{tmp_path / ACTIVE}:3: record 4 follows 2: records missing"
    assert f"{tmp_path / ACTIVE}:4: record 3 follows 4: records out of order" in problems


def test_a_duplicated_record_is_found(tmp_path: Path) -> None:
    written(tmp_path)
    problems = tamper(tmp_path, lambda lines: lines.insert(6, lines[5]))
    assert problems[0] == f"{tmp_path / ACTIVE}:7: record 6 appears twice"


def test_a_truncated_record_is_found(tmp_path: Path) -> None:
    written(tmp_path)

    def cut(lines: list[bytes]) -> None:
        lines[-1] = lines[-1][:40]

    problems = tamper(tmp_path, cut)
    assert problems == [
        f"{tmp_path / ACTIVE}:10: truncated record (the file does not end with a complete line)"
    ]


def test_rotation_continues_the_chain_across_files(tmp_path: Path) -> None:
    """Past max_bytes the file is rotated; verification spans the files; a lost file is found."""
    trail = written(tmp_path, 40, max_bytes=2000)
    rotated = sorted(tmp_path.glob("audit-*.jsonl"))
    assert len(rotated) >= 3
    assert trail.seq == 40
    report = verify_paths([tmp_path])
    assert report.ok, report.problems
    assert report.records == 40
    os.remove(rotated[1])
    problems = verify_paths([tmp_path]).problems
    assert len(problems) == 1
    assert "records missing" in problems[0]


def test_a_restarted_writer_continues_the_chain(tmp_path: Path) -> None:
    """A new process appends after the last record on disk, not from the start."""
    written(tmp_path, 5).close()
    again = opened(tmp_path)
    assert again.seq == 5
    again.append([entry(6)])
    assert verify_paths([tmp_path]).ok


def test_a_crash_mid_record_is_kept_as_evidence_and_the_chain_goes_on(tmp_path: Path) -> None:
    """A cut last line (crash while writing) is moved aside; the new file chains to the last whole record."""
    written(tmp_path, 5).close()
    with open(tmp_path / ACTIVE, "ab") as handle:
        handle.write(b'{"seq": 6, "time": "2026')
    again = opened(tmp_path)
    assert again.seq == 5
    again.append([entry(6)])
    report = verify_paths([tmp_path])
    assert any("truncated record" in problem for problem in report.problems)
    assert report.records == 6


def test_disk_full_stops_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC on write: AuditWriteError, unhealthy, nothing recorded; the next good write resumes the chain."""
    trail = written(tmp_path, 3)
    real_open = open
    failing = {"on": True}

    class Full:
        def __init__(self, handle: object) -> None:
            self.handle = handle

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> object:
            return getattr(self.handle, name)

    def fake_open(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        handle = real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]
        return Full(handle) if failing["on"] and "a" in mode else handle

    trail.close()
    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(AuditWriteError, match="No space left on device"):
        trail.append([entry(4)])
    assert not trail.healthy
    assert trail.write_errors == 1
    assert trail.seq == 3
    failing["on"] = False
    trail.append([entry(4)])
    assert trail.healthy
    assert trail.seq == 4
    assert verify_paths([tmp_path]).ok


def test_an_empty_directory_is_a_problem(tmp_path: Path) -> None:
    assert verify_paths([tmp_path]).problems == ["no audit files found"]


@pytest.mark.servers
def test_a_second_writer_of_one_trail_is_refused(tmp_path: Path) -> None:
    """Two processes on one directory would interleave records: the second is refused, by name,
    and the first goes on; once the first is closed, the trail can be opened again."""
    first = written(tmp_path, 3)
    second = subprocess.run(
        [sys.executable, "-c", "import sys; from bridge.audit import AuditTrail; AuditTrail(sys.argv[1])", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert second.returncode != 0
    assert f"the audit trail {tmp_path} is in use by another process" in second.stderr
    with pytest.raises(AuditInUseError, match=r"needs its own audit\.dir"):
        AuditTrail(tmp_path)  # a second trail object in the same process too
    first.append([entry(4)])
    first.close()
    again = opened(tmp_path)
    again.append([entry(5)])
    again.close()
    report = verify_paths([tmp_path])
    assert (report.ok, report.records) == (True, 5)
