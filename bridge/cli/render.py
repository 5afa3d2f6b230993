"""Human-readable output of ``rbridge policy explain``."""

from __future__ import annotations

import json
from typing import Any

from bridge.policy.explain import Explanation

_COLORS = {"changed": "33", "removed": "31", "added": "32", "ALLOW": "32", "DENY": "31"}
_MARKS = {"same": " ", "changed": "~", "removed": "-", "added": "+"}
_WIDTH = 38


def _paint(text: str, key: str, color: bool) -> str:
    return f"\x1b[{_COLORS[key]}m{text}\x1b[0m" if color and key in _COLORS else text


def clean(text: str) -> str:
    """``text`` safe for a terminal: control and format characters (escape sequences, C1
    controls, bidirectional overrides) from a payload are shown as escapes, never sent."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or char == " " else ascii(char)[1:-1] for char in text
    )


def _short(value: Any) -> str:
    text = clean(json.dumps(value, ensure_ascii=False))
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def print_explanation(explanation: Explanation, *, throwaway_keys: bool, color: bool) -> None:
    decision = explanation.decision
    print(
        f"policy {decision.policy!r} revision {decision.revision}; classification {decision.classification or '(invalid)'}"
    )
    print("rules, in order:")
    for step in explanation.trace:
        label = "skip " if step.outcome == "skipped" else ("ALLOW" if decision.allowed else "DENY ")
        print(f"  {_paint(label, label.strip(), color)} {clean(step.rule)}: {clean(step.why)}")
    verdict = _paint(decision.verdict.upper(), decision.verdict.upper(), color)
    where = f" -> {', '.join(decision.destinations)}" if decision.destinations else ""
    print(f"decision: {verdict}{where} (reason: {clean(decision.reason)})")
    if decision.detail and not decision.allowed:
        print(f"  {clean(decision.detail)}")
    if decision.transforms:
        print("transforms:")
        for applied in decision.transforms:
            places = f"{applied.places} place{'s' if applied.places != 1 else ''}"
            print(f"  {applied.action:<9} {clean(applied.path)} ({places})")
        if throwaway_keys and any(t.action in ("hash", "tokenize") for t in decision.transforms):
            print(
                "  (hashes and tokens made with throw-away keys; pass --keys DIR for the real ones)"
            )
    if not explanation.fields:
        return
    width = max(len(clean(change.path)) for change in explanation.fields) + 2
    print("payload:")
    print(f"    {'field':<{width}}{'input':<{_WIDTH + 2}}output")
    for change in explanation.fields:
        before = _short(change.before) if change.change != "added" else ""
        after = _short(change.after) if change.change != "removed" else "(dropped)"
        line = (
            f"  {_MARKS[change.change]} {clean(change.path):<{width}}{before:<{_WIDTH + 2}}{after}"
        )
        print(_paint(line, change.change, color))
    long_changes = [
        c for c in explanation.fields
        if c.change == "changed" and isinstance(c.before, str) and isinstance(c.after, str)
        and max(len(c.before), len(c.after)) > _WIDTH - 2
    ]  # fmt: skip
    for change in long_changes:
        print(f"{clean(change.path)} in full:")
        print(f"  input:  {clean(str(change.before))}")
        print(_paint(f"  output: {clean(str(change.after))}", "changed", color))
