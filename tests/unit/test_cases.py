"""Policy test cases: expectations checked, failures explained, unexercised rules listed."""

from __future__ import annotations

from bridge.policy import run_cases
from tests.conftest import engine_for, policy_from_text

POLICY = """\
apiVersion: rbridge/v1
kind: ResidencyPolicy
metadata: {name: cases}
spec:
  destinations: {eu: {jurisdiction: EU}, us: {jurisdiction: US}}
  keys: [k]
  rules:
    - name: docs
      match: {subjects: ["docs"]}
      decision: allow
      destinations: [eu]
      transform:
        - {path: "$.ssn", action: drop}
        - {path: "$.name", action: tokenize, key: k}
    - name: never-used
      match: {subjects: ["other"]}
      decision: deny
  tests:
    - name: passes
      message: {subject: docs, payload: {ssn: "123-45-6789", name: Jane, n: 1}}
      expect:
        decision: allow
        rule: docs
        reason: "rule:docs"
        destination: eu
        destinations: [eu]
        absent: ["$.ssn"]
        present: ["$.name"]
        values_absent: ["123-45-6789", Jane]
        output: {n: 1}
        transforms: [{path: "$.ssn", action: drop}, {path: "$.name", action: tokenize}]
    - name: fails everywhere
      message: {subject: docs, payload: {ssn: "1", name: Jane, n: 1}}
      expect:
        decision: deny
        rule: other
        destination: us
        destinations: [us]
        absent: ["$.name"]
        present: ["$.ssn"]
        values_absent: ["\\"n\\":1"]
        output: {n: 2, missing: x, deep: {a: 1}}
        transforms: [{path: "$.ssn", action: drop}]
"""


def test_cases_check_every_expectation_and_say_what_differed() -> None:
    """A passing case passes; a failing one lists each unmet expectation with expected and got."""
    text = POLICY.replace(
        "rule: other", "rule: docs"
    )  # 'other' is not a rule: the loader refuses it
    loaded = policy_from_text(text)
    report = run_cases(loaded, engine_for(loaded))
    assert [r.passed for r in report.results] == [True, False]
    failures = report.results[1].failures
    assert failures == (
        "decision: expected 'deny', got 'allow'",
        "destination: expected 'us' among ['eu']",
        "destinations: expected ['us'], got ['eu']",
        "transforms: expected [('$.ssn', 'drop')], got [('$.ssn', 'drop'), ('$.name', 'tokenize')]",
        "absent: $.name is present in the output",
        "present: $.ssn is missing from the output",
        "values_absent: '\"n\":1' appears in the output",
        "output at $.n: expected 2, got 1",
        "output at $.missing: missing, expected 'x'",
        "output at $.deep: missing, expected {'a': 1}",
    )
    assert (report.passed, report.failed) == (1, 1)
    assert report.results[1].line == 32


def test_rules_no_case_decides_are_listed() -> None:
    """Rules that no case exercises are reported by name."""
    loaded = policy_from_text(POLICY.replace("rule: other", "rule: docs"))
    report = run_cases(loaded, engine_for(loaded))
    assert report.unexercised == [("cases", "never-used")]


def test_expecting_output_from_a_denied_message_fails_clearly() -> None:
    """A case that wants output but gets a deny says so instead of comparing nothing."""
    text = POLICY.replace(
        'payload: {ssn: "1", name: Jane, n: 1}', "payload_text: 'garbage'"
    ).replace("rule: other", "rule: docs")
    loaded = policy_from_text(text)
    failures = run_cases(loaded, engine_for(loaded)).results[1].failures
    assert "output: expected an output payload, but the message was denied" in failures
