"""Look-alikes read whole (labelled product codes, dates, UUIDs) and values next to them.

The scan reads a harmless token past in one step instead of refusing the digit runs inside it
and reading the rest of the text detector by detector. These tests check both sides: such a
token costs no refusal, and a value written right before, after or around one is still found.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import identifiers as gen
from bridge.policy.candidates import digit_at
from bridge.policy.detectors import BUILTIN_DETECTORS, DetectorSet, custom_detector
from bridge.policy.leakguard import LeakGuard
from bridge.policy.lookalikes import LOOKALIKES, gs1_valid, isbn10_valid

SCANNER = DetectorSet.of(BUILTIN_DETECTORS.values())


def found(text: str) -> list[tuple[str, str]]:
    return [(text[span.start : span.end], span.detector) for span in SCANNER.spans(text)]


def refused_at(text: str) -> int:
    """Where the combined pass handed over to detector-by-detector scanning (-1: it did not)."""
    order = SCANNER._default_order
    return SCANNER._scan_together(order, text.encode(), {})[1]


def lookalikes(rng: random.Random) -> list[str]:
    code = gen.isbn13(rng)
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1950, 2049)
    return [
        f"ISBN {code[:3]}-{code[3]}-{code[4:7]}-{code[7:12]}-{code[12]}",
        f"ISBN {code}",
        f"EAN {code}",
        f"{day:02d}.{month:02d}.{year} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        f"{month:02d}/{day:02d}/{year}",
        f"{year}-{month:02d}-{day:02d}",
        str(uuid.UUID(int=rng.getrandbits(128))),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "ISBN 978-0-306-40615-7 ordered",
        "ISBN 9780306406157 in stock",
        "EAN 4006381333931 scanned",
        "ISBN 0-306-40615-2 and ISBN-10 080442957X",
        "Meeting on 08.07.1997 15:20 and 06/15/2028 12:00.",
        "Due 2026-02-14T09:30, ticket fe9793cf-d541-43b8-828b-e5ddfa5e060f closed",
    ],
)
def test_a_look_alike_is_read_whole_without_a_refusal(text: str) -> None:
    assert found(text) == []
    assert refused_at(text) == -1


def test_a_look_alike_failing_its_rule_is_scanned_as_before() -> None:
    """A wrong check digit or an impossible date is no look-alike: the careful scan decides."""
    assert not gs1_valid(b"9780306406158")
    assert not isbn10_valid(b"0306406153")
    assert refused_at("EAN 9780306406158 scanned") >= 0
    assert refused_at("on 31.31.1997 15:20") >= 0


def test_each_look_alike_reads_only_its_own_token_from_where_it_starts() -> None:
    samples = [b"EAN 4006381333931", b" 12.05.1990 10:17", b" fe9793cf-d541-43b8-828b-e5ddfa5e060f"]
    for kind, lookalike in enumerate(LOOKALIKES):
        for sample, text in enumerate(samples):
            assert lookalike.token(text) == (len(text) if sample == kind else -1)
    # A date later in the text is not this token's.
    assert LOOKALIKES[1].token(b" x 12.05.1990") == -1


SEPARATORS = [" ", ", ", ". ", "-", "/", " - ", "\n", "; ", ": "]
VALUES = {  # a generator, and the words a value of its kind needs before it
    "us_ssn": (gen.us_ssn, ""),
    "credit_card": (gen.card_number, ""),
    "iban": (gen.iban, ""),
    "de_tax_id": (gen.de_tax_id, ""),
    "fr_nir": (gen.fr_nir, ""),
    "es_dni": (gen.es_dni, ""),
    "uk_nino": (gen.uk_nino, ""),
    "it_fiscal_code": (gen.it_fiscal_code, ""),
    "uk_nhs": (gen.uk_nhs, "NHS no. "),
    "nl_bsn": (gen.nl_bsn, "BSN "),
    "se_personnummer": (gen.se_personnummer, "personnummer "),
    "phone": (lambda rng: f"+49 30 {gen.digits(rng, 4)} {gen.digits(rng, 4)}", ""),
    "email": (lambda rng: f"user{gen.digits(rng, 3)}@example.org", ""),
}


@settings(max_examples=400, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    kind=st.sampled_from(sorted(VALUES)),
    which=st.integers(0, 6),
    before=st.sampled_from(SEPARATORS),
    after=st.sampled_from(SEPARATORS),
    value_first=st.booleans(),
)
def test_a_value_next_to_a_look_alike_is_found(
    seed: int, kind: str, which: int, before: str, after: str, value_first: bool
) -> None:
    """Whatever separates them, a value beside a look-alike is masked whole: never read past
    as part of the harmless token, never cut short by it; and the leak guard sees it."""
    rng = random.Random(seed)
    generate, label = VALUES[kind]
    value = generate(rng)
    token = lookalikes(rng)[which]
    text = (
        f"x {label}{value}{before}{token}{after}y"
        if value_first
        else f"x {token}{before}{label}{value}{after} y"
    )
    start = text.index(value)
    covered = [
        span
        for span in SCANNER.spans(text)
        if span.start <= start and span.end >= start + len(value)
    ]
    assert covered, (text, found(text))
    assert kind in SCANNER.classes_in(text), (text, SCANNER.classes_in(text))


def test_an_email_address_running_on_from_a_look_alike_is_found() -> None:
    for text in (
        "write to 978-0-306-40615-7@example.com",
        "id fe9793cf-d541-43b8-828b-e5ddfa5e060f@x.io",
    ):
        assert [kind for _, kind in found(text)] == ["email"]


def test_a_look_alike_looks_only_a_little_way_ahead_for_an_e_mail_address() -> None:
    """Past 64 characters that could be an address's local part, a token is not read whole
    (undecided) rather than scanned on to the text's end: 16,000 UUIDs joined by dashes would
    otherwise cost quadratic time (about 40 times longer, measured)."""
    uuid_token = LOOKALIKES[2]
    token = b" fe9793cf-d541-43b8-828b-e5ddfa5e060f"
    assert uuid_token.end(token + b" closed", 0, len(token) + 1) == len(token)
    assert uuid_token.end(token + b"." + b"x" * 100, 0, len(token) + 2) == -1
    rng = random.Random(3)
    text = "-".join("a" + str(uuid.UUID(int=rng.getrandbits(128)))[1:] for _ in range(16_000))
    masked = {span.detector for span in SCANNER.spans(text)}
    assert masked <= set(SCANNER.classes_in(text))


def test_a_plus_before_a_date_shape_leaves_it_to_the_phone_rules() -> None:
    assert found("call +15.12-2003 now") == [("+15.12-2003", "phone")]


def test_a_card_sharing_a_group_with_a_date_is_found() -> None:
    """A 15-digit card may start with the year of a date right before it (12.05.1990 1234 ...)."""
    body = "19901234567890"
    number = body + gen.luhn_digit(body)
    grouped = f"{number[:4]} {number[4:8]} {number[8:12]} {number[12:]}"
    assert (grouped, "credit_card") in found(f"Due 12.05.{grouped} ok")


def test_look_alikes_do_not_hide_what_a_policy_looks_for() -> None:
    """Beside a policy's own patterns the scan reads no look-alike past: a custom detector of
    dates of birth still finds one."""
    birth = custom_detector("date_of_birth", r"\b\d{2}\.\d{2}\.\d{4}\b")
    scanner = DetectorSet.of([*BUILTIN_DETECTORS.values(), birth])
    text = "born 12.05.1990 in Lyon"
    assert [(text[s.start : s.end], s.detector) for s in scanner.spans(text)] == [
        ("12.05.1990", "date_of_birth")
    ]
    assert scanner.classes_in(text) == ["date_of_birth"]


# The last group of this UUID holds "9739195203", a valid bare phone number in some plans.
UUID_WITH_A_NUMBER = "Ticket 0fa3ce46-4ee0-47a6-a129-dc9739195203 closed"


def test_masks_and_the_leak_guard_agree_on_a_look_alike() -> None:
    """What a mask reads past, the leak guard does not stop: a UUID holding a phone-shaped run
    is left whole and the message is not denied for it. A policy with its own detectors reads
    no look-alikes: there both find the number, so the mask removes it and the guard passes the
    masked output."""
    output = orjson.dumps({"notes": UUID_WITH_A_NUMBER})
    assert SCANNER.spans(UUID_WITH_A_NUMBER, ("phone",)) == []
    assert SCANNER.classes_in(UUID_WITH_A_NUMBER) == []
    assert LeakGuard(SCANNER).first_unpermitted(output, frozenset()) is None

    custom = DetectorSet.of([*BUILTIN_DETECTORS.values(), custom_detector("adj", r"ADJ-\d{6}")])
    assert [s.detector for s in custom.spans(UUID_WITH_A_NUMBER, ("phone",))] == ["phone"]
    assert custom.classes_in(UUID_WITH_A_NUMBER) == ["phone"]
    assert LeakGuard(custom).first_unpermitted(output, frozenset()) == "phone"


def test_many_look_alikes_holding_number_shapes_are_passed_over_unchecked() -> None:
    """5,000 UUIDs, each holding a run a phone check would look up in numbering plans: the guard
    skips what lies inside a token before checking it, and finds nothing."""
    rng = random.Random(5)
    text = ", ".join(
        f"0fa3ce46-4ee0-47a6-a129-dc97{rng.randint(10**7, 10**8 - 1)}" for _ in range(5_000)
    )
    assert SCANNER.classes_in(text) == []
    assert SCANNER.spans(text) == []


def test_the_leak_guard_still_sees_a_value_beside_or_over_a_look_alike() -> None:
    """Only values wholly inside a token are read past: one that starts inside and runs on, or
    sits next to it, is still stopped."""
    guard = LeakGuard(SCANNER)
    for text in (
        "id fe9793cf-d541-43b8-828b-e5ddfa5e060f@x.io",
        "EAN 4006381333931 SSN 536-22-8751",
        "08.07.1997 15:20, card 4111 1111 1111 1111",
    ):
        assert guard.first_unpermitted(orjson.dumps({"n": text}), frozenset()) is not None


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("card 4111 1111 1111 1111 457-10-9562 ok", ["4111 1111 1111 1111", "457-10-9562"]),
        ("1234 457-10-9562 4111 1111 1111 1111", ["457-10-9562", "4111 1111 1111 1111"]),
        ("card 4111 1111 1111 1111 030 12345678 ok", ["4111 1111 1111 1111", "030 12345678"]),
        (
            "4111 1111 1111 1111 536-22-8751 5500 0000 0000 0004",
            ["4111 1111 1111 1111", "536-22-8751", "5500 0000 0000 0004"],
        ),
    ],
)
def test_values_in_one_run_of_digit_groups_are_each_found(text: str, values: list[str]) -> None:
    """A card confirmed inside a longer run of digit groups does not swallow the rest of it."""
    assert [value for value, _ in found(text)] == values


def test_a_run_longer_than_a_fixed_length_id_is_no_candidate_of_it() -> None:
    """A 13-digit EAN holds no 11-digit tax id: the digit-bounded pattern never offers it."""
    assert refused_at("EAN 9780306406157") == -1
    tax_id = gen.de_tax_id(random.Random(7))
    assert found(f"Steuer-ID {tax_id}.") == [(tax_id, "de_tax_id")]
    assert found(f"Steuer-ID {tax_id}") == [(tax_id, "de_tax_id")]


@pytest.mark.parametrize(
    ("name", "generate"),
    [
        ("us_ssn", gen.us_ssn),
        ("fr_nir", gen.fr_nir),
        ("de_tax_id", gen.de_tax_id),
        ("uk_nhs", gen.uk_nhs),
        ("nl_bsn", gen.nl_bsn),
        ("se_personnummer", gen.se_personnummer),
        ("ipv4", lambda rng: f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 9)}"),
    ],
)
def test_a_fixed_length_id_running_on_into_digits_is_no_candidate(name: str, generate: Any) -> None:
    """Each digit-bounded detector on its own: whatever its pattern offers in a value with more
    digits after it, no candidate runs on into a digit (none is there only to be refused)."""
    pattern = DetectorSet.of([BUILTIN_DETECTORS[name]])._patterns[0]
    detector = BUILTIN_DETECTORS[name]
    for seed in range(20):
        value = generate(random.Random(seed))
        data = f"id {value}000 ok".encode()
        position = 0
        while (found := pattern.search(data, position))[0] >= 0:
            start, stop = found
            assert not digit_at(data, detector.value_end(data, start, stop)), data[start:stop]
            position = start + 1
