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
        raise ValueError("123-45-6789 is in the payload")
    except ValueError:
        failing = logging.LogRecord(
            "rbridge.edge", logging.ERROR, __file__, 1, "handler failed", (), sys.exc_info()
        )
    text = formatter.format(failing)
    assert orjson.loads(text)["error"] == "ValueError"
    assert "123-45-6789" not in text
