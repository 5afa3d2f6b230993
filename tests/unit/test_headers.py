"""Header checks on the bus: what is refused and why."""

from __future__ import annotations

import pytest

from bridge.runtime import headers as headers_module
from bridge.runtime.headers import MAX_HEADER_VALUE, MAX_HEADERS, header_problem, passthrough


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"Rb-Class": "confidential\r\nRb-Class: public"}, "contains CR, LF or NUL"),
        ({"X-Note": "a\x00b"}, "contains CR, LF or NUL"),
        ({"X-Note": "a\nb"}, "contains CR, LF or NUL"),
        ({"Bad Name": "v"}, "forbidden character"),
        ({"Bad:Name": "v"}, "forbidden character"),
        ({"": "v"}, "forbidden character"),
        # Names NATS clients refuse to publish (not RFC 7230 tokens): refused here, before any
        # publish could fail on them.
        ({"X(y)": "v"}, "forbidden character"),
        ({"X/Y": "v"}, "forbidden character"),
        ({"Résumé": "v"}, "forbidden character"),
        ({"X\tY": "v"}, "forbidden character"),
        ({"X\x7fY": "v"}, "forbidden character"),
        ({"X-Big": "x" * (MAX_HEADER_VALUE + 1)}, "longer than"),
        ({f"X-{n}": "v" for n in range(MAX_HEADERS + 1)}, "exceed the limit"),
    ],
)
def test_bad_headers_are_named(headers: dict[str, str], fragment: str) -> None:
    problem = header_problem(headers)
    assert problem is not None
    assert fragment in problem


def test_ordinary_headers_pass_and_reserved_ones_are_dropped() -> None:
    headers = {"Rb-Class": "internal", "Nats-Msg-Id": "m-1", "Traceparent": "00-ab-cd-01"}
    assert header_problem(headers) is None
    assert passthrough(headers) == {"Traceparent": "00-ab-cd-01"}
    assert passthrough({"rb-site": "forged", "NATS-Expected-Stream": "x"}) == {}


def test_names_remembered_as_good_are_bounded_and_bad_ones_never_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(headers_module, "_GOOD_NAMES", set())
    monkeypatch.setattr(headers_module, "_GOOD_NAMES_LIMIT", 10)
    for number in range(50):
        assert header_problem({f"X-{number}": "v"}) is None
    assert len(headers_module._GOOD_NAMES) == 10
    for _ in range(2):  # refused again the second time: a bad name is never remembered
        problem = header_problem({"X(y)": "v"})
        assert problem is not None
        assert "forbidden character" in problem
    assert "X(y)" not in headers_module._GOOD_NAMES
    # A remembered name still has its value checked.
    assert header_problem({"X-1": "a\rb"}) is not None
