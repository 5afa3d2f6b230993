"""Detectors: what each finds, what it must not, and that custom patterns cannot hang us."""

from __future__ import annotations

import pytest

from bridge.policy.detectors import (
    BUILTIN_DETECTORS,
    DetectorSet,
    custom_detector,
    iban_mod97_valid,
    luhn_valid,
)

ALL = DetectorSet.of(BUILTIN_DETECTORS.values())


def found(text: str) -> list[str]:
    return ALL.classes_in(text)


@pytest.mark.parametrize(
    ("detector", "text"),
    [
        ("email", "write to jane.doe+claims@example.co.uk today"),
        ("email", "J_Smith@sub.example.museum"),
        ("phone", "call +44 20 7946 0958 now"),
        ("phone", "+1 (555) 123-4567"),
        ("phone", "+4915112345678"),
        ("phone", "(555) 123-4567"),
        ("phone", "555-123-4567"),
        ("phone", "555.123.4567"),
        ("phone", "030 12345678"),
        ("phone", "06 12 34 56 78"),
        ("us_ssn", "ssn 123-45-6789."),
        ("us_ssn", "ssn 123 45 6789"),
        ("credit_card", "card 4111 1111 1111 1111"),
        ("credit_card", "card 4111-1111-1111-1111"),
        ("credit_card", "5500005555555559"),
        ("credit_card", "amex 378282246310005"),
        ("iban", "pay DE89 3704 0044 0532 0130 00 please"),
        ("iban", "GB82WEST12345698765432"),
        ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
        ("ipv4", "from 192.168.1.1"),
        ("ipv4", "0.0.0.0"),
        ("ipv6", "peer 2001:db8:85a3::8a2e:370:7334"),
        ("ipv6", "fe80::1ff:fe23:4567:890a"),
        ("ipv6", "2001:0db8:0000:0000:0000:ff00:0042:8329"),
    ],
)
def test_true_positives(detector: str, text: str) -> None:
    """Each detector finds the formats it promises."""
    assert detector in found(text)


@pytest.mark.parametrize(
    ("detector", "text"),
    [
        ("email", "user at example dot com"),
        ("email", "@handle"),
        ("phone", "on 2026-10-03 at 10:30:00"),
        ("phone", "01.02.2024"),
        ("phone", "amount 1,234.56 EUR"),
        ("phone", "claim CLM-2026-004211"),
        ("phone", "1234"),
        ("us_ssn", "000-12-3456"),
        ("us_ssn", "666-12-3456"),
        ("us_ssn", "900-12-3456"),
        ("us_ssn", "123-00-4567"),
        ("us_ssn", "123-45-0000"),
        ("us_ssn", "123-45 6789"),
        ("us_ssn", "1234-56-7890"),
        ("credit_card", "4111 1111 1111 1112"),
        ("credit_card", "order 1234567890123"),
        ("credit_card", "9999999999999995"),
        ("iban", "GB82 WEST 1234 5698 7654 33"),
        ("iban", "DE00 0000 0000 0000 0000 00"),
        ("ipv4", "999.1.1.1"),
        ("ipv4", "version 1.2.3"),
        ("ipv6", "std::vector"),
        ("ipv6", "at 10:30:00"),
        ("ipv6", "a::b"),
    ],
)
def test_false_positives_are_rejected(detector: str, text: str) -> None:
    """Checksums and shape rules keep look-alikes (invalid SSNs, bad Luhn, dates) out."""
    assert detector not in found(text)


def test_clean_text_finds_nothing() -> None:
    """Ordinary claim prose with dates, amounts and ids trips no detector."""
    text = (
        "Rear bumper and tail light damaged while parked on 2026-10-03 at 17:45. Estimate "
        "EUR 2,450.00 from the garage, claim CLM-2026-004211, vehicle year 2021, 3 photos."
    )
    assert found(text) == []


def test_luhn_and_mod97() -> None:
    """The checksums themselves, on known-good and known-bad numbers."""
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert iban_mod97_valid("GB82WEST12345698765432")
    assert not iban_mod97_valid("GB82WEST12345698765431")
    assert not iban_mod97_valid("GB82WE$T12345698765432")


def test_spans_are_merged_and_restricted_to_the_requested_detectors() -> None:
    """Mask spans: only the asked-for detectors, overlapping hits merged."""
    text = "mail jane@example.com, call +44 20 7946 0958, ssn 123-45-6789"
    spans = ALL.spans(text, ("email", "us_ssn"))
    assert [(text[s.start : s.end], s.detector) for s in spans] == [
        ("jane@example.com", "email"),
        ("123-45-6789", "us_ssn"),
    ]


def test_classes_in_scans_bytes_as_well_as_text() -> None:
    """The leak guard scans serialised bytes; results match the text scan."""
    assert ALL.classes_in(b'{"a":"jane@example.com"}') == ["email"]


def test_custom_detector_is_used_like_a_builtin() -> None:
    """A policy's own pattern finds its values alongside the built-ins."""
    scanner = DetectorSet.of(
        [*BUILTIN_DETECTORS.values(), custom_detector("mrn", r"\bMRN-\d{7}\b")]
    )
    assert scanner.classes_in("see MRN-1234567") == ["mrn"]


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        (r"(a)\1", "backreferences"),
        (r"(?=abc)x", "lookaround"),
        (r"(unclosed", "not a valid RE2 pattern"),
        (r"a*", "empty string"),
        ("x" * 1001, "exceeds the limit"),
    ],
)
def test_unsafe_or_broken_custom_patterns_are_refused(pattern: str, fragment: str) -> None:
    """Patterns RE2 cannot run in linear time, broken ones, and match-everything ones fail."""
    with pytest.raises(ValueError, match=fragment):
        custom_detector("custom", pattern)


def test_catastrophic_backtracking_pattern_runs_in_linear_time() -> None:
    """(a+)+$ hangs a backtracking engine on 'aaaa…!'; under RE2 it is an ordinary scan."""
    scanner = DetectorSet.of([custom_detector("evil", r"(a+)+$")])
    assert scanner.classes_in("a" * 100_000 + "!") == []


def test_the_first_named_detector_wins_on_the_same_text() -> None:
    """'943 476 5919' is a phone shape and an NHS number: the order asked for decides the name."""
    nhs = custom_detector("nhs_number", r"\b\d{3} \d{3} \d{4}\b")
    scanner = DetectorSet.of([*BUILTIN_DETECTORS.values(), nhs])
    text = "see 943 476 5919"
    assert [s.detector for s in scanner.spans(text, ("nhs_number", "phone"))] == ["nhs_number"]
    assert [s.detector for s in scanner.spans(text, ("phone", "nhs_number"))] == ["phone"]
    assert [s.detector for s in scanner.spans(text)] == ["nhs_number"]


def test_a_failed_look_alike_does_not_hide_a_real_value() -> None:
    """A 16-digit run failing Luhn is no card, but its tail can still be a phone number."""
    text = "ref 4111 1111 1111 1112, tel +44 20 7946 0958"
    assert [
        (text[s.start : s.end], s.detector) for s in ALL.spans(text, ("credit_card", "phone"))
    ] == [("+44 20 7946 0958", "phone")]


def test_spans_of_non_ascii_text_are_in_characters() -> None:
    """Offsets index the str the caller gave, not its UTF-8 bytes."""
    text = "Grüße an jane@example.de"
    (span,) = ALL.spans(text, ("email",))
    assert text[span.start : span.end] == "jane@example.de"


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("x +49 30 6604 8764 2018 y", "+49 30 6604 8764"),
        ("call +44 20 7946 0958 20.05.2018 22:51", "+44 20 7946 0958"),
        ("+1 415 555 2671 4111 2222 3333 ok", "+1 415 555 2671"),
    ],
)
def test_a_phone_number_followed_by_more_digit_groups_is_found(text: str, number: str) -> None:
    """More digits than any number has: the groups after it are something else, and the number
    is the longest run of whole groups before them (all of it was missed before)."""
    spans = DetectorSet.of(BUILTIN_DETECTORS.values()).spans(text)
    start = text.index(number)
    assert any(
        s.detector == "phone" and s.start <= start and s.end >= start + len(number) for s in spans
    ), [(text[s.start : s.end], s.detector) for s in spans]
