"""Payload validation: every kind of malformed input is refused precisely and cheaply."""

from __future__ import annotations

import orjson
import pytest

from bridge.policy.payload import PayloadError, PayloadLimits, parse_payload

LIMITS = PayloadLimits(max_bytes=1024, max_depth=8)


def refusal(raw: bytes, limits: PayloadLimits = LIMITS) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_payload(raw, limits)
    return caught.value


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"x" * 1025, "too-large"),
        (b'{"a":"\xff\xfe"}', "not-utf8"),
        (b'{"a": "\xed\xa0\x80"}', "not-utf8"),
        (b"not json", "not-json"),
        (b'{"a": 1,}', "not-json"),
        (b'{"a": NaN}', "not-json"),
        (b'{"a": "\\ud800"}', "not-utf8"),
        (b'{"a": "\\udc00 trailing"}', "not-utf8"),
        (b'{"n": 411111111111111111111}', "number-out-of-range"),
        (b'{"acct": 123456789012345678901234567890}', "number-out-of-range"),
        (b'{"n": -9223372036854775809}', "number-out-of-range"),
        (b"", "not-json"),
        (b"[1, 2]", "not-object"),
        (b'"text"', "not-object"),
        (b"null", "not-object"),
        (b"42", "not-object"),
        (b'{"a":1,"a":2}', "duplicate-key"),
        (b'{"a": 1, "b": {"c": 1, "c": 1}}', "duplicate-key"),
        (b'{"a":' * 9 + b"1" + b"}" * 9, "too-deep"),
        (b'{"a":' + b"[" * 9 + b"]" * 9 + b"}", "too-deep"),
    ],
)
def test_malformed_payloads_are_refused_with_a_code(raw: bytes, code: str) -> None:
    """Each kind of garbage has its own code, so the sender and the audit can tell them apart."""
    assert refusal(raw).code == code


def test_size_message_names_both_numbers() -> None:
    """The refusal says how big the payload was and what the limit is."""
    assert str(refusal(b"x" * 2000)) == "payload of 2000 bytes exceeds the limit of 1024 bytes"


def test_nesting_beyond_the_parsers_own_limit_is_refused_quickly() -> None:
    """A megabyte of '[' is refused, not recursed into."""
    raw = b"[" * 500_000
    assert refusal(raw, PayloadLimits(max_bytes=1 << 20, max_depth=64)).code in (
        "too-deep",
        "not-json",
    )


def test_duplicate_key_message_does_not_echo_unusual_keys() -> None:
    """A key that could itself be data is described by its length, not printed."""
    message = str(refusal(b'{"jane@example.com":1,"jane@example.com":2}'))
    assert "jane" not in message
    assert "of 16 characters" in message


def test_depth_at_the_limit_is_accepted() -> None:
    """Exactly max_depth levels is fine; one more is not."""
    raw = b'{"a":' * 7 + b"{}" + b"}" * 7
    assert parse_payload(raw, LIMITS)
    assert refusal(b'{"a":' * 8 + b"{}" + b"}" * 8).code == "too-deep"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "b": [1, 2, {"c": "d"}]}',
        b'{\n  "a": "caf\xc3\xa9",\n  "b": null\n}',
        b'{"a":"\\u00e9","b":1.5e3}',
        b'{"same":{"x":1},"other":{"x":2}}',
    ],
)
def test_valid_payloads_parse_canonical_or_not(raw: bytes) -> None:
    """Whitespace, escapes and number forms are fine; equal keys in different objects are fine."""
    assert isinstance(parse_payload(raw, LIMITS), dict)


@pytest.mark.parametrize(
    "raw", [b'{"n": 18446744073709551615}', b'{"n": -9223372036854775808}', b'{"n": 0.1}']
)
def test_numbers_within_64_bits_keep_their_exact_value(raw: bytes) -> None:
    """The widest integers orjson carries exactly are accepted and come back digit for digit."""
    document = parse_payload(raw, LIMITS)
    assert orjson.dumps(document) == raw.replace(b" ", b"")


def test_an_integer_beyond_64_bits_is_refused_not_rounded() -> None:
    """A 21-digit integer would become a float (4.1e+20): refused, naming what to do instead."""
    error = refusal(b'{"card": 411111111111111111111}')
    assert "21 digits" in error.detail
    assert "send them as strings" in error.detail
    assert "4111" not in error.detail
