"""A rule's field allowlist (``keep``): only the listed paths leave, everything else is dropped.

Guessing every spelling a sender might use for a field (``ssn``, ``SSN``, ``Claimant.SSN``, a
list where an object was expected) is a losing game; naming the fields that may leave is not.
The paths form a tree; the payload is walked once against it, and a member or element that no
path reaches is removed. A path that stops at a member keeps everything under it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.policy.paths import FieldPath


@dataclass(slots=True)
class _Node:
    whole: bool = False  # a path ends here: keep everything below
    names: dict[str, _Node] = field(default_factory=dict)
    indexes: dict[int, _Node] = field(default_factory=dict)
    each: _Node | None = None


class FieldAllowlist:
    """The compiled ``keep`` paths of one rule."""

    __slots__ = ("_root", "paths")

    def __init__(self, paths: Iterable[FieldPath]) -> None:
        self.paths = tuple(paths)
        self._root = _Node()
        for path in self.paths:
            node = self._root
            for step in path.steps:
                if step.kind == "key":
                    node = node.names.setdefault(step.name, _Node())
                elif step.kind == "index":
                    node = node.indexes.setdefault(step.index, _Node())
                elif step.kind == "each":
                    if node.each is None:
                        node.each = _Node()
                    node = node.each
                else:
                    raise ValueError(f"'..' cannot be used in a keep path: {path.text!r}")
            node.whole = True

    def prune(self, document: dict[str, Any]) -> int:
        """Remove from ``document`` every field no path keeps; return how many were removed."""
        return _prune(document, (self._root,))


def _prune(node: Any, rules: tuple[_Node, ...]) -> int:
    if type(node) is dict:
        slots: Iterable[Any] = list(node)
        named = True
    elif type(node) is list:
        # From the end, so that earlier indexes stay valid while elements go.
        slots = range(len(node) - 1, -1, -1)
        named = False
    else:
        return 0
    removed = 0
    for slot in slots:
        below = tuple(
            child
            for rule in rules
            for child in ((rule.names if named else rule.indexes).get(slot), rule.each)
            if child is not None
        )
        removed += _keep_or_remove(node, slot, below)
    return removed


def _keep_or_remove(container: Any, slot: Any, below: tuple[_Node, ...]) -> int:
    if any(rule.whole for rule in below):
        return 0
    value = container[slot]
    if not below or type(value) not in (dict, list):
        # No path goes here, or one goes further but finds a plain value: it does not leave.
        del container[slot]
        return 1
    return _prune(value, below)
