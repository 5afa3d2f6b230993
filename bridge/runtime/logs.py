"""Structured JSON logs: one object per line, with message and trace ids when given, never values.

Log calls pass identifiers through ``extra={"msg_id": …, "trace_id": …, "site": …}``; nothing
that carries payload content is ever logged. An exception is logged as its type and its
traceback's frames (file, line, function), without its message.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from bridge import tracing
from bridge.supervise import frames

_FIELDS = ("msg_id", "trace_id", "site", "rule", "reason", "destination", "revision", "code")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if "trace_id" not in entry and (ids := tracing.log_ids()) is not None:
            entry["trace_id"], entry["span_id"] = ids  # the span the line was logged in
        if record.exc_info and record.exc_info[0] is not None:
            # The exception's type and where it was raised, never its message (it may quote a
            # value from a message).
            entry["error"] = record.exc_info[0].__name__
            if record.exc_info[1] is not None:
                entry["frames"] = frames(record.exc_info[1])
        return orjson.dumps(entry).decode()


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # gRPC and nats-py are chatty at info; their warnings still come through.
    logging.getLogger("nats").setLevel(logging.WARNING)
