"""Running the ``tests:`` cases of a policy: example messages with their expected outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from bridge.policy.engine import Decision, Engine, Message
from bridge.policy.loader import LoadedPolicy
from bridge.policy.model import Expect, PolicyCase
from bridge.policy.paths import FieldPath, render


@dataclass(frozen=True, slots=True)
class CaseResult:
    policy: str
    file: str
    line: int
    name: str
    decision: Decision
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(slots=True)
class CaseReport:
    results: list[CaseResult] = field(default_factory=list)
    unexercised: list[tuple[str, str]] = field(default_factory=list)
    """(policy, rule) pairs that no case was decided by."""

    @property
    def passed(self) -> int:
        return sum(result.passed for result in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed


def case_message(case: PolicyCase) -> Message:
    message = case.message
    raw = (
        orjson.dumps(message.payload)
        if message.payload is not None
        else (message.payload_text or "").encode()
    )
    return Message(message.subject, raw, dict(message.headers))


def run_cases(loaded: LoadedPolicy, engine: Engine, report: CaseReport | None = None) -> CaseReport:
    """Evaluate every case of ``loaded`` with ``engine``; add results to ``report``."""
    report = report if report is not None else CaseReport()
    exercised: set[str] = set()
    for index, case in enumerate(loaded.policy.spec.tests):
        decision = engine.evaluate(case_message(case))
        if decision.rule is not None:
            exercised.add(decision.rule)
        line = loaded.source.where(("spec", "tests", index))[0]
        failures = tuple(check_expectations(case.expect, decision))
        report.results.append(
            CaseResult(
                loaded.policy.metadata.name, loaded.file, line, case.name, decision, failures
            )
        )
    report.unexercised.extend(
        (loaded.policy.metadata.name, rule.name)
        for rule in loaded.policy.spec.rules
        if rule.name not in exercised
    )
    return report


def check_expectations(expect: Expect, decision: Decision) -> list[str]:
    """One line per unmet expectation, each saying what was expected and what came out."""
    failures: list[str] = []

    def differ(what: str, expected: Any, actual: Any) -> None:
        if expected is not None and expected != actual:
            failures.append(f"{what}: expected {expected!r}, got {actual!r}")

    differ("decision", expect.decision, decision.verdict)
    differ("rule", expect.rule, decision.rule)
    differ("reason", expect.reason, decision.reason)
    if expect.destination is not None and expect.destination not in decision.destinations:
        failures.append(
            f"destination: expected {expect.destination!r} among {list(decision.destinations)!r}"
        )
    if expect.destinations is not None:
        differ("destinations", list(expect.destinations), list(decision.destinations))
    if expect.transforms is not None:
        expected = [(t.path, t.action) for t in expect.transforms]
        actual = [(t.path, t.action) for t in decision.transforms if t.places]
        differ("transforms", expected, actual)

    output = orjson.loads(decision.payload) if decision.payload is not None else None
    if output is None and (expect.present or expect.output is not None):
        failures.append("output: expected an output payload, but the message was denied")
        return failures
    for path in expect.absent:
        if output is not None and FieldPath.parse(path).locate(output):
            failures.append(f"absent: {path} is present in the output")
    for path in expect.present:
        if output is not None and not FieldPath.parse(path).locate(output):
            failures.append(f"present: {path} is missing from the output")
    if decision.payload is not None:
        text = decision.payload.decode()
        failures.extend(
            f"values_absent: {value!r} appears in the output"
            for value in expect.values_absent
            if value in text
        )
    if expect.output is not None and output is not None:
        failures.extend(fragment_differences(expect.output, output, ()))
    return failures


def fragment_differences(expected: Any, actual: Any, trail: tuple[Any, ...]) -> list[str]:
    """Where ``actual`` fails to contain ``expected`` (objects: a subset; else: equal)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"output at {render(trail)}: expected an object, got {actual!r}"]
        found: list[str] = []
        for name, value in expected.items():
            if name not in actual:
                found.append(f"output at {render((*trail, name))}: missing, expected {value!r}")
            else:
                found.extend(fragment_differences(value, actual[name], (*trail, name)))
        return found
    if expected != actual:
        return [f"output at {render(trail)}: expected {expected!r}, got {actual!r}"]
    return []
