"""Rules that can never match, because the rules above them together take every message first.

First match wins, so a rule is dead when, for each classification it applies to, the earlier
rules that apply to that classification match every subject it matches. One earlier rule may do
it (``docs.>`` above ``docs.parse``) or several together (``docs.*`` and ``docs.*.>`` above
``docs.>``; an allow for ``public, internal`` and one for ``confidential, restricted`` above a
deny with no classification).

Earlier rules go into one subject trie per classification, so checking a rule walks only the
branches its own patterns can reach: a policy of tens of thousands of literal subjects is checked
in time proportional to its size. A ``*`` in a checked pattern must be covered for every token,
so it is tried for each literal the trie holds at that place and for a token none of them names;
a trailing ``>`` is tried for every length up to one past the deepest earlier pattern. The work
for one rule is bounded; a rule that would take longer is not judged (and not reported).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

CLASSES = ("public", "internal", "confidential", "restricted")
WORK_PER_RULE = 200_000


@dataclass(slots=True)
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    star: _Node | None = None
    ends: int = -1  # the first rule whose pattern ends here
    rest: int = -1  # the first rule whose pattern has '>' here
    depth: int = 0  # the longest pattern below, in tokens


@dataclass(frozen=True, slots=True)
class RuleShape:
    """What the check needs of a rule: its subjects as tokens and its classifications."""

    patterns: tuple[tuple[str, ...], ...]
    classes: frozenset[str] | None


class _OutOfTime(Exception):
    pass


class _Walk:
    def __init__(self) -> None:
        self.budget = WORK_PER_RULE
        self.used: set[int] = set()

    def covered(self, pattern: tuple[str, ...], at: int, nodes: list[_Node]) -> bool:
        self.budget -= 1
        if self.budget < 0:
            raise _OutOfTime
        if at < len(pattern):
            for node in nodes:
                if node.rest >= 0:
                    self.used.add(node.rest)
                    return True
        if at == len(pattern):
            for node in nodes:
                if node.ends >= 0:
                    self.used.add(node.ends)
                    return True
            return False
        token = pattern[at]
        stars = [node.star for node in nodes if node.star is not None]
        if token == ">":
            deepest = max(node.depth for node in nodes)
            return all(
                self.covered(pattern[:at] + ("*",) * length, at, nodes)
                for length in range(1, deepest + 2)
            )
        if token != "*":
            following = [node.children[token] for node in nodes if token in node.children]
            return bool(following or stars) and self.covered(pattern, at + 1, following + stars)
        # '*': every literal the trie knows here, and any other token.
        if not stars or not self.covered(pattern, at + 1, stars):
            return False
        literals = {name for node in nodes for name in node.children}
        return all(
            self.covered(
                pattern,
                at + 1,
                [node.children[name] for node in nodes if name in node.children] + stars,
            )
            for name in literals
        )


def _insert(root: _Node, pattern: tuple[str, ...], rule: int) -> None:
    node = root
    node.depth = max(node.depth, len(pattern))
    for position, token in enumerate(pattern):
        if token == ">":
            if node.rest < 0:
                node.rest = rule
            return
        if token == "*":
            if node.star is None:
                node.star = _Node()
            node = node.star
        else:
            node = node.children.setdefault(token, _Node())
        node.depth = max(node.depth, len(pattern) - position - 1)
    if node.ends < 0:
        node.ends = rule


def shadowed(rules: Sequence[RuleShape | None]) -> dict[int, tuple[int, ...]]:
    """For each rule that can never match: the earlier rules that together take its messages.

    ``None`` stands for a rule too malformed to judge (it neither shadows nor is judged).
    """
    tries = {level: _Node() for level in CLASSES}
    found: dict[int, tuple[int, ...]] = {}
    for index, rule in enumerate(rules):
        if rule is None or not rule.patterns:
            continue
        levels = CLASSES if rule.classes is None else tuple(c for c in CLASSES if c in rule.classes)
        walk = _Walk()
        try:
            dead = bool(levels) and all(
                walk.covered(pattern, 0, [tries[level]])
                for level in levels
                for pattern in rule.patterns
            )
        except _OutOfTime:
            dead = False
        if dead:
            found[index] = tuple(sorted(walk.used))
        for level in levels:
            for pattern in rule.patterns:
                _insert(tries[level], pattern, index)
    return found
