"""What a sender controls (header spellings, its own classification, field names) cannot steer a
decision past what the policy says."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bridge.contract import HeaderConflict, rb_headers
from bridge.policy import Engine, MemoryKeyRing, Message
from bridge.policy.engine import KEEP_PATH
from tests.conftest import policy_from_text

POLICY = policy_from_text("""\
apiVersion: rbridge/v1
kind: ResidencyPolicy
metadata: {name: steer}
spec:
  classification_floors:
    - {subjects: ["claims.>"], minimum: confidential}
    - {subjects: ["claims.fraud.>"], minimum: restricted}
  destinations: {eu: {jurisdiction: EU}}
  rules:
    - name: restricted-stays
      match: {subjects: [">"], classification: [restricted]}
      decision: deny
    - name: public-anything
      match: {subjects: [">"], classification: [public]}
      decision: allow
      destinations: [eu]
    - name: claims-kept-fields
      match: {subjects: ["claims.>"], classification: [confidential]}
      decision: allow
      destinations: [eu]
      keep: ["$.claim_id", "$.items[*].sku", "$.vehicle", "$.lines[0]"]
      transform:
        - {path: "$.vehicle.vin", action: drop}
""")
ENGINE = Engine(POLICY.policy, MemoryKeyRing())


def decide(subject: str, payload: Any, headers: dict[str, str] | None = None) -> Any:
    return ENGINE.evaluate(Message(subject, orjson.dumps(payload), headers or {}))


@pytest.mark.parametrize("name", ["Rb-Class", "rb-class", "RB-CLASS", "rB-cLaSs"])
def test_the_classification_header_is_read_in_any_spelling(name: str) -> None:
    """'rb-class: restricted' is as restricted as 'Rb-Class: restricted'."""
    decision = decide("stats.x", {"a": 1}, {name: "restricted"})
    assert decision.rule == "restricted-stays"


def test_two_spellings_with_different_values_are_refused() -> None:
    """A reader that sees one spelling and a reader that sees the other must never disagree."""
    decision = decide("stats.x", {"a": 1}, {"Rb-Class": "public", "rb-class": "restricted"})
    assert (decision.verdict, decision.reason) == ("deny", "bad-header")
    assert "Rb-Class" in decision.detail


def test_two_spellings_with_the_same_value_are_one_header() -> None:
    assert rb_headers({"Rb-Class": "public", "RB-CLASS": "public"}) == {"rb-class": "public"}
    with pytest.raises(HeaderConflict):
        rb_headers({"Rb-Reply-To": "_INBOX.a", "rb-reply-to": "_INBOX.b"})


def test_a_floor_raises_a_lower_label() -> None:
    """A claim labelled public is treated as confidential: the public rule does not take it."""
    decision = decide("claims.intake", {"claim_id": "C-1"}, {"Rb-Class": "public"})
    assert (decision.rule, decision.classification) == ("claims-kept-fields", "confidential")


def test_a_label_above_the_floor_stands() -> None:
    decision = decide("claims.intake", {"claim_id": "C-1"}, {"Rb-Class": "restricted"})
    assert decision.rule == "restricted-stays"


def test_the_highest_matching_floor_applies() -> None:
    """Fraud reports match both floors; the higher one (restricted) wins."""
    decision = decide("claims.fraud.report", {"claim_id": "C-1"}, {"Rb-Class": "public"})
    assert (decision.rule, decision.classification) == ("restricted-stays", "restricted")


def test_subjects_without_a_floor_keep_the_senders_label() -> None:
    assert decide("stats.x", {"a": 1}, {"Rb-Class": "public"}).rule == "public-anything"


def test_only_the_kept_fields_leave() -> None:
    """Unknown members, other spellings and lists where objects were expected are all dropped;
    kept members keep everything under them; the count is reported, never the names."""
    payload = {
        "claim_id": "C-1",
        "Claim_Id": "536-22-8751",
        "claimant": {"ssn": "536-22-8751"},
        "items": [{"sku": "A1", "owner": "Jane"}, {"sku": "B2"}, "loose"],
        "vehicle": {"make": "Volvo", "vin": "YV1", "extra": {"deep": 1}},
        "lines": [{"x": 1}, {"x": 2}],
    }
    decision = decide("claims.intake", payload, {"Rb-Class": "confidential"})
    assert decision.allowed, decision.reason
    assert orjson.loads(decision.payload or b"") == {
        "claim_id": "C-1",
        "items": [{"sku": "A1"}, {"sku": "B2"}],
        "vehicle": {"make": "Volvo", "extra": {"deep": 1}},
        "lines": [{"x": 1}],
    }
    kept, vin = decision.transforms
    assert (kept.path, kept.action) == (KEEP_PATH, "drop")
    assert kept.places == 5  # Claim_Id, claimant, items[0].owner, items[2], lines[1]
    assert (vin.path, vin.places) == ("$.vehicle.vin", 1)


def test_a_kept_path_that_finds_a_plain_value_where_it_expected_more_drops_it() -> None:
    """'$.items[*].sku' does not keep 'items' when a sender makes it a string."""
    decision = decide("claims.intake", {"claim_id": "C", "items": "all of them"})
    assert orjson.loads(decision.payload or b"") == {"claim_id": "C"}
