"""Decision reasons and audit record kinds: typed, one spelling each, read back as written."""

from __future__ import annotations

import pytest

from bridge.audit.records import kind_of
from bridge.policy import Engine, Message
from bridge.policy.reasons import Reason, ReasonKind
from tests.conftest import engine_for, policy_from_text

POLICY = """
apiVersion: rbridge/v1
kind: ResidencyPolicy
metadata: {name: reasons}
spec:
  defaults: {classification: internal}
  limits: {max_payload_bytes: 200, max_depth: 4}
  destinations:
    eu: {jurisdiction: EU}
  rules:
    - name: closed
      match: {subjects: ["a.closed"]}
      decision: deny
    - name: open
      match: {subjects: ["a.*"]}
      decision: allow
      destinations: [eu]
"""


@pytest.mark.parametrize("kind", list(ReasonKind))
def test_a_reason_reads_back_its_kind_and_detail(kind: ReasonKind) -> None:
    reason = Reason.of(kind, "x.y:z")
    assert reason == f"{kind.value}:x.y:z"
    assert (reason.kind, reason.detail) == (kind, "x.y:z")
    bare = Reason.of(kind)
    assert (bare, bare.kind, bare.detail) == (kind.value, kind, "")


def test_text_that_is_no_reason_is_refused_when_read() -> None:
    with pytest.raises(ValueError, match="lenient"):
        _ = Reason("lenient:yes").kind


@pytest.fixture
def engine() -> Engine:
    return engine_for(policy_from_text(POLICY))


@pytest.mark.parametrize(
    ("subject", "payload", "headers", "kind", "detail"),
    [
        ("a.open", b'{"note": "hi"}', {}, ReasonKind.RULE, "open"),
        ("a.closed", b"{}", {}, ReasonKind.RULE, "closed"),
        ("b.none", b"{}", {}, ReasonKind.NO_MATCHING_RULE, ""),
        ("a.open", b'{"mail": "jane@example.com"}', {}, ReasonKind.LEAK_GUARD, "email"),
        ("a.open", b"not json", {}, ReasonKind.PAYLOAD, "not-json"),
        ("a.open", b"{}", {"Rb-Class": "secretish"}, ReasonKind.BAD_CLASSIFICATION, ""),
        (
            "a.open",
            b"{}",
            {"Rb-Class": "public", "rb-class": "internal"},
            ReasonKind.BAD_HEADER,
            "",
        ),
        ("a..open", b"{}", {}, ReasonKind.BAD_SUBJECT, ""),
    ],
)
def test_every_decision_carries_a_typed_reason(
    engine: Engine,
    subject: str,
    payload: bytes,
    headers: dict[str, str],
    kind: ReasonKind,
    detail: str,
) -> None:
    decision = engine.evaluate(Message(subject, payload, headers))
    assert isinstance(decision.reason, Reason)
    assert (decision.reason.kind, decision.reason.detail) == (kind, detail)


def test_an_internal_error_is_a_deny_with_an_error_reason(engine: Engine) -> None:
    decision = engine.evaluate(Message("a.open", None, {}))  # type: ignore[arg-type]
    assert decision.verdict == "deny"
    assert decision.reason.kind is ReasonKind.ERROR
    assert decision.reason.detail  # the exception's type, never its message


RECORD = {
    "seq": 1, "time": "t", "prev": "0", "hash": "h",
    "direction": "outbound", "site": "s", "msg_id": "m", "subject": "a.open",
    "decision": "allow", "rule": "open", "reason": "rule:open", "destination": "eu",
    "classification": "internal", "transforms": [], "input_sha256": "d", "output_sha256": "e",
    "policy": "p", "revision": 1,
}  # fmt: skip


def test_an_audit_record_is_of_exactly_one_kind() -> None:
    assert kind_of(RECORD) == "DecisionRecord"
    assert kind_of({**RECORD, "reply": "reply-subject-not-allowed"}) == "DecisionRecord"
    refused = {k: v for k, v in RECORD.items() if k not in {"destination", "classification",
               "transforms", "input_sha256", "output_sha256"}}  # fmt: skip
    assert kind_of({**refused, "decision": "refused-by-cloud"}) == "CloudRefusalRecord"
    assert kind_of({**RECORD, "decision": "refused-by-cloud"}) is None  # fields of another kind
    assert kind_of({**RECORD, "decision": "maybe"}) is None
    assert kind_of({**RECORD, "value": "123-45-6789"}) is None  # a field no kind has
    missing = dict(RECORD)
    del missing["reason"]
    assert kind_of(missing) is None
