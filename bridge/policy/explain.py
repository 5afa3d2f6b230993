"""Why a message got the decision it did: the rules tried, the transforms, before and after."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from bridge.policy.engine import Decision, Engine, Message
from bridge.policy.paths import render

_MISSING = object()


@dataclass(frozen=True, slots=True)
class RuleTrace:
    rule: str
    outcome: str  # "skipped" or "decided"
    why: str


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    before: Any
    after: Any
    change: str  # "same", "changed", "removed", "added"


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    trace: tuple[RuleTrace, ...]
    fields: tuple[FieldChange, ...]
    input_document: Any


def explain(engine: Engine, message: Message) -> Explanation:
    """Evaluate ``message`` and say why, rule by rule and field by field."""
    decision = engine.evaluate(message)
    trace: list[RuleTrace] = []
    classification = decision.classification
    tokens = message.subject.split(".")
    for rule in engine.rules:
        if rule.name == decision.rule:
            trace.append(
                RuleTrace(
                    rule.name,
                    "decided",
                    f"{'allows' if rule.allow else 'denies'}: subject and classification match",
                )
            )
            break
        if not any(pattern.matches(tokens) for pattern in rule.patterns):
            patterns = ", ".join(p.text for p in rule.patterns)
            trace.append(
                RuleTrace(
                    rule.name, "skipped", f"subject {message.subject!r} matches none of {patterns}"
                )
            )
        elif rule.classes is not None and classification not in rule.classes:
            trace.append(
                RuleTrace(
                    rule.name,
                    "skipped",
                    f"classification {classification!r} is not in {sorted(rule.classes)}",
                )
            )
    try:
        before = orjson.loads(message.payload)
    except orjson.JSONDecodeError:
        before = None
    after = orjson.loads(decision.payload) if decision.payload is not None else _MISSING
    fields = tuple(_changes(before, after)) if after is not _MISSING else ()
    return Explanation(decision, tuple(trace), fields, before)


def _leaves(document: Any, trail: tuple[Any, ...] = ()) -> dict[str, Any]:
    if isinstance(document, dict) and document:
        found: dict[str, Any] = {}
        for name, value in document.items():
            found.update(_leaves(value, (*trail, name)))
        return found
    if isinstance(document, list) and document:
        found = {}
        for index, value in enumerate(document):
            found.update(_leaves(value, (*trail, index)))
        return found
    return {render(trail): document}


def _changes(before: Any, after: Any) -> list[FieldChange]:
    old, new = _leaves(before), _leaves(after)
    changes = []
    for path, value in old.items():
        if path not in new:
            changes.append(FieldChange(path, value, None, "removed"))
        else:
            changes.append(
                FieldChange(path, value, new[path], "same" if new[path] == value else "changed")
            )
    changes.extend(
        FieldChange(path, None, value, "added") for path, value in new.items() if path not in old
    )
    return changes


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    """The machine-readable form printed by ``rbridge policy explain --json``."""
    decision = explanation.decision
    return {
        "decision": decision.verdict,
        "rule": decision.rule,
        "destination": decision.destinations[0] if decision.destinations else None,
        "destinations": list(decision.destinations),
        "reason": decision.reason,
        "detail": decision.detail,
        "classification": decision.classification,
        "policy": decision.policy,
        "revision": decision.revision,
        "transforms": [
            {"path": t.path, "action": t.action, "places": t.places} for t in decision.transforms
        ],
        "trace": [{"rule": t.rule, "outcome": t.outcome, "why": t.why} for t in explanation.trace],
        "payload": orjson.loads(decision.payload) if decision.payload is not None else None,
    }
