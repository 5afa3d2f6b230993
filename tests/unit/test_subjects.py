"""The one subject matcher: NATS wildcard semantics, validation, and subsumption."""

from __future__ import annotations

import random

import pytest

from bridge.policy.subjects import SubjectPattern, matches, subject_error


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("docs.parse", "docs.parse", True),
        ("docs.parse", "docs.parse.x", False),
        ("docs.parse", "docs", False),
        ("docs.*", "docs.parse", True),
        ("docs.*", "docs", False),
        ("docs.*", "docs.parse.pdf", False),
        ("*.parse", "docs.parse", True),
        ("*.*", "a.b", True),
        ("*", "a", True),
        ("*", "a.b", False),
        ("docs.>", "docs.parse", True),
        ("docs.>", "docs.parse.pdf.v2", True),
        ("docs.>", "docs", False),
        (">", "anything.at.all", True),
        (">", "x", True),
        ("docs.*.pdf", "docs.parse.pdf", True),
        ("docs.*.pdf", "docs.parse.png", False),
        ("docs.*.>", "docs.parse.pdf", True),
        ("docs.*.>", "docs.parse", False),
        ("Docs.parse", "docs.parse", False),
    ],
)
def test_matcher_follows_nats_wildcards(pattern: str, subject: str, expected: bool) -> None:
    """'*' matches exactly one token, '>' one or more trailing tokens, literals match exactly."""
    assert matches(pattern, subject) is expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("docs..parse", "empty token"),
        (".docs", "empty token"),
        ("docs.", "empty token"),
        ("docs.>.x", "last token"),
        ("docs.pa*", "whole tokens"),
        ("docs.>x", "whole tokens"),
        ("docs parse", "whitespace"),
        ("docs.parse\r\n", "whitespace"),
        ("docs.\x00", "control"),
        ("a" * 300, "exceeds"),
        ("docs.\ufffd", "not valid UTF-8"),  # what bytes that were not UTF-8 read as
        ("\ufffd\ufffd.>", "not valid UTF-8"),
    ],
)
def test_bad_patterns_are_refused_with_a_reason(text: str, fragment: str) -> None:
    """Invalid patterns get a message that says what is wrong."""
    problem = subject_error(text, pattern=True)
    assert problem is not None
    assert fragment in problem
    with pytest.raises(ValueError, match=fragment):
        SubjectPattern.parse(text)


def test_concrete_subjects_refuse_wildcards() -> None:
    """A message subject is concrete: wildcards are an error there, not a pattern."""
    assert subject_error("docs.*", pattern=False) is not None
    assert subject_error("docs.>", pattern=False) is not None
    assert subject_error("docs.parse", pattern=False) is None
    assert subject_error("docs.caf\u00e9", pattern=False) is None  # UTF-8 is fine
    assert subject_error("docs.\ufffd", pattern=False) is not None


@pytest.mark.parametrize(
    ("wide", "narrow", "expected"),
    [
        (">", "docs.parse", True),
        (">", ">", True),
        ("docs.>", "docs.parse", True),
        ("docs.>", "docs.*", True),
        ("docs.>", "docs.>", True),
        ("docs.>", "docs", False),
        ("docs.*", "docs.parse", True),
        ("docs.*", "docs.>", False),
        ("docs.*", "docs.*", True),
        ("docs.parse", "docs.*", False),
        ("docs.parse", "docs.parse", True),
        ("*.parse", "docs.parse", True),
        ("docs.*.pdf", "docs.>", False),
        ("docs.*.>", "docs.x.y.z", True),
        ("health.>", "docs.parse", False),
    ],
)
def test_covers_means_every_subject_of_the_narrow_pattern_matches_the_wide_one(
    wide: str, narrow: str, expected: bool
) -> None:
    """Subsumption, used to find rules that can never match."""
    assert SubjectPattern.parse(wide).covers(SubjectPattern.parse(narrow)) is expected


def _valid_by_the_rules(subject: str, pattern: bool) -> bool:
    """The subject rules written out plainly, to hold the fast path of subject_error to."""
    if not subject or len(subject) > 256:
        return False
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in subject):
        return False
    tokens = subject.split(".")
    for position, token in enumerate(tokens):
        if not token:
            return False
        if token in ("*", ">"):
            if not pattern or (token == ">" and position != len(tokens) - 1):
                return False
        elif "*" in token or ">" in token:
            return False
    return True


def test_every_subject_is_judged_by_the_same_rules_on_the_fast_path_and_off_it() -> None:
    alphabet = ["a", "Z", "9", "_", "-", ".", ".", "*", ">", " ", "\t", "\x00", "\x1f", "\x7f",
                "\x80", "é", "\u2028", "\u3000", "$", "%"]  # fmt: skip
    chooser = random.Random(20261206)
    seen_valid = seen_invalid = 0
    for _ in range(20_000):
        subject = "".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 12)))
        for pattern in (False, True):
            expected = _valid_by_the_rules(subject, pattern)
            assert (subject_error(subject, pattern=pattern) is None) is expected, (subject, pattern)
            seen_valid += expected
            seen_invalid += not expected
    assert seen_valid > 1000
    assert seen_invalid > 1000
    assert subject_error("a" * 257, pattern=False) is not None
    assert subject_error("a" * 256, pattern=False) is None
