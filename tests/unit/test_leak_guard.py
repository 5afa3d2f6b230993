"""The leak guard and the mask against a sender who wants a value past them.

Every case runs three ways: the edge engine with an allow rule and no transform (the leak guard
alone must deny), the gateway's own guard on the same bytes (it must give the same answer), and
an allow rule that masks the field (the value must be gone from the output, read normalised).
"""

from __future__ import annotations

import re
import string
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.cloud.store import CloudGuard
from bridge.policy import Engine, MemoryKeyRing, Message
from bridge.policy.detectors import BUILTIN_DETECTORS, DetectorSet, luhn_valid
from bridge.policy.leakguard import read_output
from bridge.policy.textview import TextView
from tests.conftest import policy_from_text

POLICY = policy_from_text("""\
apiVersion: rbridge/v1
kind: ResidencyPolicy
metadata: {name: guard}
spec:
  destinations: {eu: {jurisdiction: EU}}
  rules:
    - name: open
      match: {subjects: ["open"]}
      decision: allow
      destinations: [eu]
    - name: masked
      match: {subjects: ["masked"]}
      decision: allow
      destinations: [eu]
      transform:
        - {path: "$.notes", action: mask, detectors: [email, us_ssn, credit_card, iban, phone, ipv4]}
""")
ENGINE = Engine(POLICY.policy, MemoryKeyRing())
GATEWAY = CloudGuard.of(list(BUILTIN_DETECTORS), {})
SCANNER = DetectorSet.of(BUILTIN_DETECTORS.values())


def leak_class(notes: Any) -> str | None:
    """What the edge's leak guard says about a payload, checked against the gateway's guard."""
    payload = orjson.dumps({"notes": notes})
    decision = ENGINE.evaluate(Message("open", payload))
    edge = decision.reason.removeprefix("leak-guard:") if not decision.allowed else None
    assert GATEWAY.finding("open", payload) == edge, "edge and gateway guards disagree"
    return edge


def masked(notes: str) -> str:
    decision = ENGINE.evaluate(Message("masked", orjson.dumps({"notes": notes})))
    assert decision.allowed, decision.reason
    assert decision.payload is not None
    result: str = orjson.loads(decision.payload)["notes"]
    return result


EVASIONS = {
    "fullwidth digits": ("us_ssn", "ssn ５３６-２２-８７５１ on file"),
    "arabic-indic digits": ("us_ssn", "ssn ٥٣٦-٢٢-٨٧٥١"),
    "devanagari digits": ("credit_card", "card ४१११ ११११ ११११ ११११"),
    "mathematical bold digits": ("credit_card", "𝟒𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏"),
    "fullwidth hyphens": ("us_ssn", "536－22－8751"),
    "fullwidth plus": ("phone", "call ＋44 20 7946 0958"),
    "fullwidth at-sign": ("email", "ann＠example.org"),
    "zero-width space": ("us_ssn", "536\u200b-22-8751"),
    "word joiners": ("credit_card", "4111\u20601111\u20601111\u20601111"),
    "soft hyphen": ("email", "an\u00adn@exam\u00adple.org"),
    "zero-width joiner in a card": ("credit_card", "41\u200d11 1111 1111 1111"),
    "no-break spaces": ("us_ssn", "536\u00a022\u00a08751"),
    "narrow no-break spaces": ("credit_card", "4111\u202f1111\u202f1111\u202f1111"),
    "en dashes": ("us_ssn", "536–22–8751"),
    "U+2010 hyphens": ("us_ssn", "536‐22‐8751"),
    "minus signs": ("us_ssn", "536−22−8751"),
    "dots": ("us_ssn", "536.22.8751"),
    "slashes": ("credit_card", "4111/1111/1111/1111"),
    "underscores": ("us_ssn", "536_22_8751"),
    "double spaces": ("credit_card", "4111  1111  1111  1111"),
    "line breaks": ("us_ssn", "536\n22\n8751"),
    "percent-encoded digits": ("us_ssn", "%35%33%36-22-8751"),
    "fullwidth full stop in an e-mail": ("email", "ann＠example．org"),
    "glued to a label": ("us_ssn", "SSN536-22-8751"),
    "glued after an underscore": ("us_ssn", "ssn_536-22-8751"),
    "glued card": ("credit_card", "card4111111111111111"),
    "glued phone": ("phone", "Tel+442079460958"),
    "card after a failed longer run": ("credit_card", "cvv 123 4111 1111 1111 1111"),
    "url-encoded e-mail": ("email", "ann%40example.org"),
    "escaped JSON inside a string": ("us_ssn", '{"ssn": "\\u0035\\u0033\\u0036-22-8751"}'),
    "html character references": ("email", "ann&#64;example.org"),
    "lower-case compact IBAN": ("iban", "de89370400440532013000"),
    "lower-case grouped IBAN": ("iban", "de89 3704 0044 0532 0130 00"),
    "phone with area code in parentheses": ("phone", "(020) 7946 0958"),
    "phone with a short area code": ("phone", "(030) 1234567"),
    "phone with the 00 prefix": ("phone", "0033 1 23 45 67 89"),
    "labelled bare SSN": ("us_ssn", "social security number: 536228751"),
    "labelled bare phone": ("phone", "mobile 4915212345678"),
}


@pytest.mark.parametrize(("expected", "notes"), EVASIONS.values(), ids=EVASIONS.keys())
def test_the_leak_guard_reads_through_the_evasion(expected: str, notes: str) -> None:
    """With nothing masked, the leak guard alone denies, naming the class of the value."""
    assert leak_class(notes) == expected


@pytest.mark.parametrize(("expected", "notes"), EVASIONS.values(), ids=EVASIONS.keys())
def test_the_mask_removes_exactly_the_value(expected: str, notes: str) -> None:
    """The mask replaces the value's original characters (invisible ones too), nothing more."""
    result = masked(notes)
    assert f"[{expected}]" in result
    assert leak_class(result) is None
    for word in ("ssn", "card", "call", "mobile", "on file"):
        if notes.lower().startswith(word) or notes.endswith(word):
            assert word in result.lower()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("ssn", 536228751, "us_ssn"),
        ("phone", 4915212345678, "phone"),
        ("card", 4111111111111111, "credit_card"),
    ],
)
def test_values_sent_as_json_numbers_are_found(field: str, value: int, expected: str) -> None:
    """An SSN or phone number sent as a number, next to its member's name, is still found."""
    payload = orjson.dumps({field: value})
    decision = ENGINE.evaluate(Message("open", payload))
    assert decision.reason == f"leak-guard:{expected}"
    assert GATEWAY.finding("open", payload) == expected


def test_numbers_without_a_telling_name_are_not_flagged() -> None:
    """Amounts, years and ids stay what they are: a bare number needs a label to be a value."""
    payload = {"notes": "ok", "year": 2021, "amount": 536228751, "order": 4915212345678}
    assert ENGINE.evaluate(Message("open", orjson.dumps(payload))).allowed


@pytest.mark.parametrize(
    "notes",
    [
        "Rear bumper damaged on 2026-10-03 at 17:45; estimate EUR 2,450.00, claim CLM-2026-004211.",
        "Meeting 08.07.1997 15:20, ref 03-10-2026; version 1.2.3.4567, order 1234567890123.",
        "Tel. extension 42, room 0.12, 3 photos, 12 pages, total 1,234.56 EUR.",
        "déjà vu: naïve café in Zürich, 5 km from the office",
    ],
)
def test_ordinary_text_passes(notes: str) -> None:
    """Dates, amounts, versions and accented words are no sensitive values."""
    assert leak_class(notes) is None
    assert masked(notes) == notes


def test_a_masked_iban_leaves_nothing_behind() -> None:
    """The whole IBAN goes, not its head with a phone-shaped tail masked."""
    result = masked("pay to de89 3704 0044 0532 0130 00 today")
    assert result == "pay to [iban] today"


def test_escapes_glued_to_a_value_do_not_hide_it() -> None:
    """A newline before a number serialises as '\\n536…'; the guard still sees the number."""
    assert leak_class("line one\n536-22-8751") == "us_ssn"
    assert leak_class("tab\t4111 1111 1111 1111") == "credit_card"


def test_reading_decodes_json_escapes_one_level_down() -> None:
    """The serialised output of escaped JSON inside a string reads as its characters."""
    output = orjson.dumps({"notes": '{"a": "\\u0035\\u0033\\u0036-22-8751"}'})
    assert b"536-22-8751" in read_output(output)


def test_spans_map_back_to_the_original_characters() -> None:
    """A value with invisible characters inside is masked with them; the text around is kept."""
    text = "x ５３６\u200b-２２-８７５１ y"
    (span,) = SCANNER.spans(text, ("us_ssn",))
    assert text[: span.start] == "x "
    assert text[span.end :] == " y"
    view = TextView.of(text)
    assert view.text == "x 536-22-8751 y"


# --- property: any combination of evasions, for values from each detector's own generator ---

DIGIT_FORMS = [
    "0123456789",
    "０１２３４５６７８９",
    "٠١٢٣٤٥٦٧٨٩",
    "۰۱۲۳۴۵۶۷۸۹",
    "०१२३४५६७८९",
    "০১২৩৪৫৬৭৮৯",
    "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗",
    "𝟘𝟙𝟚𝟛𝟜𝟝𝟞𝟟𝟠𝟡",
]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff"]
DASHES = ["-", "–", "‐", "‑", "－", "−", "—"]
SPACES = [" ", "\u00a0", "\u202f", "\u2009", "\u3000", "  "]
SEPARATORS = DASHES + SPACES + [".", "/", "_"]


@st.composite
def ssns(draw: st.DrawFn) -> list[str]:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    group = draw(st.integers(1, 99))
    serial = draw(st.integers(1, 9999))
    return [f"{area:03d}", f"{group:02d}", f"{serial:04d}"]


@st.composite
def cards(draw: st.DrawFn) -> list[str]:
    # 16-digit numbers of real issuer ranges (Visa, Mastercard 5x and 2-series, JCB, Discover)
    prefix = draw(st.sampled_from(["4", "51", "55", "2221", "2720", "3528", "6011", "62"]))
    body = prefix + "".join(
        draw(
            st.lists(
                st.sampled_from(string.digits), min_size=15 - len(prefix), max_size=15 - len(prefix)
            )
        )
    )
    check = next(d for d in string.digits if luhn_valid(body + d))
    number = body + check
    return [number[i : i + 4] for i in range(0, 16, 4)]


def evade(draw: Any, groups: list[str], same_separator: bool) -> str:
    """The groups of a value, written with the evasions a sender might combine."""
    digits: str = draw(st.sampled_from(DIGIT_FORMS))
    table = str.maketrans("0123456789", digits)
    separator: str = draw(st.sampled_from(SEPARATORS))
    written = ""
    for index, group in enumerate(groups):
        group = group.translate(table)
        if draw(st.booleans()):
            at = draw(st.integers(0, len(group)))
            group = group[:at] + draw(st.sampled_from(INVISIBLE)) + group[at:]
        if index:
            if not same_separator:
                separator = draw(st.sampled_from(SEPARATORS))
            written += separator
        written += group
    return written


GLUE = ["", "SSN", "ssn_", "card", "no.", "ref:", "x "]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(["us_ssn", "credit_card"]))
def test_any_combination_of_evasions_is_denied_and_masked(data: st.DataObject, kind: str) -> None:
    """Unicode digits, invisible characters, separators and glue, combined: still found."""
    groups = data.draw(ssns() if kind == "us_ssn" else cards())
    value = evade(data.draw, groups, same_separator=kind == "us_ssn")
    glue = data.draw(st.sampled_from(GLUE))
    notes = f"see {glue}{value} today"
    assert leak_class(notes) == kind
    result = masked(notes)
    assert f"[{kind}]" in result
    assert "".join(groups) not in re.sub(r"\D", "", TextView.of(result).text)


@st.composite
def ibans(draw: st.DrawFn) -> list[str]:
    """A valid IBAN of a few countries (check digits computed), in groups of four."""
    country, length = draw(st.sampled_from([("DE", 22), ("GB", 22), ("FR", 27), ("NL", 18)]))
    alphabet = string.digits if country == "DE" else string.digits + string.ascii_uppercase
    bban = "".join(
        draw(st.lists(st.sampled_from(alphabet), min_size=length - 4, max_size=length - 4))
    )
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    compact = f"{country}{98 - number % 97:02d}{bban}"
    return [compact[i : i + 4] for i in range(0, len(compact), 4)]


@st.composite
def phones(draw: st.DrawFn) -> list[str]:
    """International numbers as people write them: +CC, then groups."""
    country = draw(st.sampled_from(["+44", "+49", "+33", "+1"]))
    area = draw(st.integers(10, 999))
    exchange = draw(st.integers(100, 9999))
    line = draw(st.integers(0, 9999))
    return [country, str(area), str(exchange), f"{line:04d}"]


@st.composite
def ipv4s(draw: st.DrawFn) -> list[str]:
    return [str(draw(st.integers(1, 255))) for _ in range(4)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    kind=st.sampled_from(["iban", "phone", "ipv4"]),
)
def test_other_detectors_see_through_the_evasions_too(data: st.DataObject, kind: str) -> None:
    """IBANs, phone numbers and IPv4 addresses in Unicode digits, with invisible characters,
    look-alike spaces and dashes, glued to letters: still found, and masked whole."""
    groups = data.draw({"iban": ibans(), "phone": phones(), "ipv4": ipv4s()}[kind])
    digits = data.draw(st.sampled_from(DIGIT_FORMS))
    table = str.maketrans("0123456789", digits)
    separators = {
        "iban": [" ", "\u00a0", "\u202f", ""],
        "phone": [*SPACES, "-", "–"],
        "ipv4": ["."],
    }
    separator = data.draw(st.sampled_from(separators[kind]))
    written = ""
    for index, group in enumerate(groups):
        group = group.translate(table)
        if len(group) > 1 and data.draw(st.booleans()):
            at = data.draw(st.integers(1, len(group) - 1))
            group = group[:at] + data.draw(st.sampled_from(INVISIBLE)) + group[at:]
        written += (separator if index else "") + group
    glue = data.draw(
        st.sampled_from(["", "x ", {"iban": "IBAN", "phone": "Tel", "ipv4": "ip"}[kind]])
    )
    notes = f"see {glue}{written} today"
    assert leak_class(notes) == kind
    result = masked(notes)
    assert f"[{kind}]" in result
    assert leak_class(result) is None


@st.composite
def emails(draw: st.DrawFn) -> str:
    user = draw(st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8))
    host = draw(st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=8))
    at = draw(st.sampled_from(["@", "＠", "%40", "&#64;", "\\u0040"]))
    if draw(st.booleans()):
        user = user[:1] + draw(st.sampled_from(INVISIBLE)) + user[1:]
    return f"{user}{at}{host}.org"


@settings(max_examples=150, deadline=None)
@given(address=emails())
def test_any_written_form_of_an_email_is_denied_and_masked(address: str) -> None:
    """Look-alike, encoded and invisible-laced at-signs still make an e-mail address."""
    assert leak_class(f"write to {address} soon") == "email"
    assert masked(f"write to {address} soon") == "write to [email] soon"


# --- linear time -------------------------------------------------------------------------


class ScanCounter:
    """Counts the bytes RE2 is asked to read, the measure of work that wall-clock time is not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from bridge.policy import detectors

        self.read = 0
        original = detectors._Pattern.search

        def counting(pattern: Any, data: bytes, position: int) -> tuple[int, int]:
            found = original(pattern, data, position)
            self.read += (found[1] if found[0] >= 0 else len(data)) - position
            return found

        monkeypatch.setattr(detectors._Pattern, "search", counting)


@pytest.mark.parametrize(
    "unit",
    [
        "03-10-2026; ",  # date-shaped phone candidates, each refused
        "4111 1111 1111 111",  # a run of card-shaped groups that fail Luhn
        "+1 (2) ",  # phone prefixes that never complete
        "123-45-67 ",  # almost SSNs
        "a@b ",  # almost e-mails
        "1.2.3.",  # an endless dotted number
        "٣٠-١٠-٢٠٢٦\u200b ",  # the same with Unicode digits and invisible characters
    ],
)
def test_detection_and_masking_read_each_byte_a_bounded_number_of_times(
    unit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twice the text is twice the work: no input makes the scan quadratic (it once was)."""
    counter = ScanCounter(monkeypatch)
    reads = []
    for repeats in (2000, 4000):
        counter.read = 0
        notes = unit * repeats
        masked(notes)
        leak_class(notes)
        reads.append(counter.read / len(notes.encode()))
    assert reads[1] < reads[0] * 1.2 + 1, reads
    assert reads[1] < 200, reads
