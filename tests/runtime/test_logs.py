"""Structured logs: one JSON object per line, ids included, exception messages never."""

from __future__ import annotations

import logging
import sys

import orjson

from bridge.runtime.logs import JsonFormatter


def test_a_log_line_is_json_with_ids_and_without_exception_text() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord(
        "rbridge.edge", logging.WARNING, __file__, 1, "refused: %s", ("leak-guard",), None
    )
    record.msg_id = "plant-a/claim-1"
    record.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    line = orjson.loads(formatter.format(record))
    assert line["level"] == "warning"
    assert line["message"] == "refused: leak-guard"
    assert (line["msg_id"], line["trace_id"]) == (
        "plant-a/claim-1",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    )
    try:
        deep_failure("123-45-6789")
    except ValueError:
        failing = logging.LogRecord(
            "rbridge.edge", logging.ERROR, __file__, 1, "handler failed", (), sys.exc_info()
        )
    text = formatter.format(failing)
    logged = orjson.loads(text)
    assert logged["error"] == "ValueError"
    # Where it happened, innermost last, so a maintainer can find it; what it said, never.
    assert [frame.split(" ")[1] for frame in logged["frames"]] == [
        "test_a_log_line_is_json_with_ids_and_without_exception_text",
        "deep_failure",
        "parse",
    ]
    assert logged["frames"][-1].startswith("runtime/test_logs.py:")
    assert "123-45-6789" not in text


def deep_failure(value: str) -> None:
    parse({"ssn": value})


def parse(document: dict[str, str]) -> None:
    raise ValueError(f"{document['ssn']} is in the payload")
