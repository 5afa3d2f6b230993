"""National identifiers, secrets and phone numbers: published examples, broken check digits,
and every generated valid value found inside random text while its broken twin is not."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import identifiers as gen
from bridge.policy.detectors import BUILTIN_DETECTORS, DetectorSet

SCANNER = DetectorSet.of(BUILTIN_DETECTORS.values())


def found(text: str) -> list[tuple[str, str]]:
    return [(text[span.start : span.end], span.detector) for span in SCANNER.spans(text)]


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        ("NHS number 943 476 5919 on file", "943 476 5919", "uk_nhs"),
        ("Steuer-ID 86095742719.", "86095742719", "de_tax_id"),
        ("Steuer-ID 86 095 742 719.", "86 095 742 719", "de_tax_id"),
        ("NIR 2 55 08 14 168 025 38", "2 55 08 14 168 025 38", "fr_nir"),
        ("NIR 255081416802538", "255081416802538", "fr_nir"),
        ("CF RSSMRA85T10A562S", "RSSMRA85T10A562S", "it_fiscal_code"),
        ("DNI 12345678Z", "12345678Z", "es_dni"),
        ("NIE X1234567L", "X1234567L", "es_nie"),
        ("BSN 111222333", "111222333", "nl_bsn"),
        ("personnummer 811228-9874", "811228-9874", "se_personnummer"),
        ("pnr 8112289874", "8112289874", "se_personnummer"),
        ("NI number AB 12 34 56 C", "AB 12 34 56 C", "uk_nino"),
        ("key AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
        (
            '"api_key": "sk4eC39HqLyjWDarjtT1zdp7dc"',
            'api_key": "sk4eC39HqLyjWDarjtT1zdp7dc',
            "api_key",
        ),
        ("call 580-273-1785x8439 today", "580-273-1785x8439", "phone"),
        ("call (854)413-1940 ext. 6566", "(854)413-1940 ext. 6566", "phone"),
        ("call 580-273-1785X8439 today", "580-273-1785X8439", "phone"),  # any case of "x"
        ("call (854)413-1940 EXT. 6566", "(854)413-1940 EXT. 6566", "phone"),
        ("TEL: 03360-8847", "03360-8847", "phone"),  # ZIP+4-shaped, but labelled
        ("Tel 0228292498", "0228292498", "phone"),
        ("ring 09098790029", "09098790029", "phone"),
        ("(0114) 496 0526", "(0114) 496 0526", "phone"),
        ("(02307) 270605", "(02307) 270605", "phone"),
        ("+33 (0)4 75 15 13 41", "+33 (0)4 75 15 13 41", "phone"),
        ("SSN 078-36-1004", "078-36-1004", "us_ssn"),
        ("card 6304 6657 3833", "6304 6657 3833", "credit_card"),
        ("passport no. 546128973", "546128973", "passport"),
        ("Reisepass-Nr. C01X00T47", "C01X00T47", "passport"),
        ("passeport n° 12AB34567", "12AB34567", "passport"),
        ("paid 4006381333932 today", "4006381333932", "credit_card"),  # 13-digit Visa shape
        ("sku 4012 8888 8888 1881", "4012 8888 8888 1881", "credit_card"),  # a word never hides
        ("EAN 4012 8888 8888 1881", "4012 8888 8888 1881", "credit_card"),  # a grouped card
        ("amex 3782 822463 10005", "3782 822463 10005", "credit_card"),
        ("card 2223 0000 4840 0011", "2223 0000 4840 0011", "credit_card"),
    ],
)
def test_published_examples_are_found_with_their_type(text: str, value: str, kind: str) -> None:
    assert (value, kind) in found(text)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("NHS number 943 476 5918", "uk_nhs"),  # check digit off by one (still phone-shaped)
        ("Reference 943 476 5919", "uk_nhs"),  # valid mod 11, but nothing says NHS
        ("Steuer-ID 86095742718", "de_tax_id"),
        ("Steuer-ID 11114567890", "de_tax_id"),  # 1 four times: the digit rule
        ("NIR 2 55 08 14 168 025 39", "fr_nir"),
        ("CF RSSMRA85T10A562T", "it_fiscal_code"),
        ("DNI 12345678A", "es_dni"),
        ("NIE X1234567A", "es_nie"),
        ("BSN 111222334", "nl_bsn"),
        ("number 111222333", "nl_bsn"),  # 11-proof, but nothing says BSN
        ("personnummer 811228-9875", "se_personnummer"),
        ("NI number GB 12 34 56 C", "uk_nino"),  # a prefix never allocated
        ("ref 7111 1111 1111 1114", "credit_card"),  # Luhn-valid, but no network issues 7…
        ("ref 411111111111116", "credit_card"),  # Visa issues 13, 16 or 19 digits, not 15
        ("EAN 4006381333932", "credit_card"),  # a Luhn-valid EAN-13 is a product code
        ("GTIN: 4006381333932", "credit_card"),
        ("ISBN-13 4006381333932", "credit_card"),
    ],
)
def test_broken_check_digits_and_missing_context_are_not_that_type(text: str, kind: str) -> None:
    assert kind not in {detector for _, detector in found(text)}


@pytest.mark.parametrize(
    "text",
    [
        "ZIP 03360-8847",
        "Meeting on 08.07.1997 15:20 and 06/15/2028 12:00.",
        "ISBN 978-0-306-40615-7 ordered",
        "Ticket fe9793cf-d541-43b8-828b-e5ddfa5e060f closed",
        "password: correcthorsebatterystaple",  # no digit: a phrase, not a key
        "boarding pass AB123456 and booking ref 546128973",  # no word for passport
        "passport renewed on 12.03.2024",
        "Order ORD-2026-004211 shipped, version 10.4.12, EUR 2,450.00",
    ],
)
def test_look_alikes_are_not_found(text: str) -> None:
    assert found(text) == []


VALID = {
    "uk_nhs": (gen.uk_nhs, "NHS no. "),
    "de_tax_id": (gen.de_tax_id, "Steuer-ID "),
    "fr_nir": (gen.fr_nir, "NIR "),
    "it_fiscal_code": (gen.it_fiscal_code, "CF "),
    "es_dni": (gen.es_dni, "DNI "),
    "es_nie": (gen.es_nie, "NIE "),
    "nl_bsn": (gen.nl_bsn, "BSN "),
    "se_personnummer": (gen.se_personnummer, "personnummer "),
    "uk_nino": (gen.uk_nino, "NINO "),
    "aws_access_key": (gen.aws_access_key, ""),
    "jwt": (gen.jwt, "Bearer "),
    "private_key": (gen.pem_private_key, ""),
    "credit_card": (gen.card_number, "card "),
    "iban": (gen.iban, "IBAN "),
    "us_ssn": (gen.us_ssn, "SSN "),
    "passport": (gen.passport_number, "passport no. "),
}

words = st.text(alphabet="abcdefghij klmnop,.;:", max_size=40)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), kind=st.sampled_from(sorted(VALID)), before=words, after=words)
def test_every_generated_value_is_found_inside_random_text(
    seed: int, kind: str, before: str, after: str
) -> None:
    generate, label = VALID[kind]
    value = generate(random.Random(seed))
    text = f"{before} {label}{value} {after}"
    assert (value, kind) in found(text), (text, found(text))


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), before=words, after=words)
def test_a_broken_nhs_number_is_never_found(seed: int, before: str, after: str) -> None:
    value = gen.invalid_uk_nhs(random.Random(seed))
    assert "uk_nhs" not in {kind for _, kind in found(f"{before} NHS no. {value} {after}")}


REGIONS_POLICY = """
apiVersion: rbridge/v1
kind: ResidencyPolicy
metadata: {name: regions}
spec:
  phone_regions: %s
  destinations: {eu: {jurisdiction: EU}}
  rules:
    - name: notes
      match: {subjects: ["notes"]}
      decision: allow
      destinations: [eu]
"""


def test_a_policy_names_the_numbering_plans_for_bare_numbers() -> None:
    from bridge.policy import Message
    from tests.conftest import engine_for, policy_from_text

    def verdict(regions: str, number: str) -> str:
        engine = engine_for(policy_from_text(REGIONS_POLICY % regions))
        decision = engine.evaluate(Message("notes", b'{"note": "ring %s"}' % number.encode(), {}))
        return decision.reason

    assert verdict("[GB]", "09098790029") == "leak-guard:phone"
    assert verdict("[GB]", "3125550142") == "rule:notes"  # valid in the US plan only
    assert verdict("[US]", "3125550142") == "leak-guard:phone"


def test_a_region_without_a_numbering_plan_is_refused_by_name() -> None:
    from bridge.errors import PolicyLoadError
    from tests.conftest import policy_from_text

    with pytest.raises(PolicyLoadError, match="'XX'"):
        policy_from_text(REGIONS_POLICY % "[GB, XX]")
