"""Appending to the audit trail: JSON lines, each holding the hash of the one before.

Every record carries ``seq`` (one more than the previous), ``prev`` (the previous record's
hash) and ``hash`` (SHA-256 of the record's canonical JSON without ``hash``). Records describe
decisions (rule, reason, paths and actions, digests of input and output) and never carry values.
``append`` writes and flushes a batch of records before it returns, so a caller that forwards
only after it returned never forwards anything unaudited; if the write fails, it raises
:class:`AuditWriteError` and the caller stops forwarding until a later append succeeds.

The active file is ``<dir>/audit.jsonl``; past ``max_bytes`` it is renamed to
``audit-<first seq>.jsonl`` and a new one starts, the chain continuing across files.

A trail has one writer: the process holds an exclusive lock on ``<dir>/.writer.lock`` for its
life, and a second process opening the same directory is refused (two writers would interleave
their records and break the chain). Several bridges on one host each need their own directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bridge.errors import RbridgeError

ACTIVE = "audit.jsonl"
LOCK = ".writer.lock"
GENESIS = "0" * 64
_ROTATED = re.compile(r"^audit-(\d{20})\.jsonl$")


class AuditWriteError(RbridgeError):
    """The audit trail could not be written; nothing may be forwarded until it can."""

    retriable = True


class AuditInUseError(AuditWriteError):
    """Another process writes the same trail: a configuration error, not a passing one."""

    retriable = False


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 over the record's canonical JSON (sorted keys), without its own ``hash``."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AuditTrail:
    def __init__(
        self, directory: str | Path, *, max_bytes: int = 64 << 20, fsync: bool = False
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.seq = 0
        self.last_hash = GENESIS
        self.healthy = True
        self.last_error = ""
        self.write_errors = 0
        self._handle: Any = None
        self._lock: Any = None
        self._size = 0
        self._take_lock()
        self._open()

    @property
    def path(self) -> Path:
        return self.directory / ACTIVE

    def _take_lock(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            handle = open(self.directory / LOCK, "a+b")  # noqa: SIM115 - held for the process's life
        except OSError as error:
            raise AuditWriteError(
                f"cannot open the audit trail {self.directory}: {error.strerror}"
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise AuditInUseError(
                f"the audit trail {self.directory} is in use by another process; every bridge "
                "process needs its own audit.dir (RBRIDGE_AUDIT__DIR)"
            ) from None
        self._lock = handle

    def _open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            self._resume()
            self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open for the process's life
            self._size = self._handle.tell()
        except OSError as error:
            raise AuditWriteError(
                f"cannot open the audit trail {self.path}: {error.strerror}"
            ) from None

    def _resume(self) -> None:
        """Continue the chain from the last complete record on disk."""
        last = self._last_record(self.path)
        if last is None:
            rotated = sorted(p for p in self.directory.iterdir() if _ROTATED.match(p.name))
            last = self._last_record(rotated[-1]) if rotated else None
        if last is not None:
            self.seq, self.last_hash = int(last["seq"]), str(last["hash"])

    def _last_record(self, path: Path) -> dict[str, Any] | None:
        if not path.exists() or path.stat().st_size == 0:
            return None
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - (1 << 20)))
            lines = handle.read().split(b"\n")
        if lines[-1] != b"":
            # A record cut short by a crash: keep the file as evidence, start a new one.
            self._rotate_file(path, note="truncated")
        for line in reversed([line for line in lines[:-1] if line]):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and "seq" in record and "hash" in record:
                return record
        return None

    def _rotate_file(self, path: Path, note: str = "") -> None:
        first = self._first_seq(path)
        target = self.directory / f"audit-{first:020d}.jsonl"
        if note and target.exists():
            target = self.directory / f"audit-{first:020d}-{note}.jsonl"
        os.replace(path, target)

    @staticmethod
    def _first_seq(path: Path) -> int:
        with open(path, "rb") as handle:
            line = handle.readline()
        try:
            return int(orjson.loads(line)["seq"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return 0

    def append(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Chain, write and flush ``entries`` (dicts without seq/prev/hash); all or nothing."""
        if not entries:
            return
        seq, previous = self.seq, self.last_hash
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        lines = []
        for entry in entries:
            seq += 1
            # The canonical body (sorted keys) is both what is hashed and the line, with the
            # hash appended as its last member: one serialisation per record, not two.
            body = orjson.dumps(
                {"seq": seq, "time": now, **entry, "prev": previous}, option=orjson.OPT_SORT_KEYS
            )
            previous = hashlib.sha256(body).hexdigest()
            lines.append(b'%s,"hash":"%s"}' % (body[:-1], previous.encode()))
        data = b"\n".join(lines) + b"\n"
        try:
            if self._handle is None:
                self._open()
            self._handle.write(data)
            self._handle.flush()
            if self.fsync:
                os.fsync(self._handle.fileno())
        except (OSError, AuditWriteError) as error:
            self._fail(error)
            raise AuditWriteError(
                f"cannot write the audit trail {self.path}: {getattr(error, 'strerror', None) or error}"
            ) from None
        self.seq, self.last_hash = seq, previous
        self._size += len(data)
        self.healthy, self.last_error = True, ""
        if self._size >= self.max_bytes:
            self._rotate()

    def _fail(self, error: BaseException) -> None:
        self.healthy = False
        self.write_errors += 1
        self.last_error = str(getattr(error, "strerror", None) or error)
        # What was half-written is unknown: reopen (and resume from disk) on the next attempt.
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None

    def _rotate(self) -> None:
        try:
            self._handle.close()
            self._handle = None
            self._rotate_file(self.path)
            self._handle = open(self.path, "ab")  # noqa: SIM115
            self._size = 0
        except OSError as error:
            self._fail(error)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None
