"""A small JSONPath subset for naming fields in a payload.

Supported: ``$.a.b`` (members), ``$['a b']`` (quoted member), ``$.a[*].b`` (every element of an
array), ``$.a[2]`` (one element), ``$.a.*`` (every member of an object) and ``$..name`` (a member
called ``name`` at any depth). Filters, slices and scripts are not: a path either names fields or
is refused when the policy loads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

StepKind = Literal["key", "index", "each", "descend"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_INDEX = re.compile(r"\[(\d{1,6})\]")
_QUOTED = re.compile(r"\['((?:[^'\\]|\\.)*)'\]")
MAX_PATH_LENGTH = 512

Location = tuple[Any, Any]
"""A place in a document: the container (dict or list) and the key or index in it."""


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    name: str = ""
    index: int = 0


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A parsed path; ``text`` is what the policy author wrote."""

    text: str
    steps: tuple[Step, ...]

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        """Parse ``text`` or raise ValueError with a message that says where it went wrong."""
        if len(text) > MAX_PATH_LENGTH:
            raise ValueError(f"path of {len(text)} characters exceeds {MAX_PATH_LENGTH}")
        if not text.startswith("$"):
            raise ValueError("a path starts with '$', as in '$.claimant.name'")
        steps: list[Step] = []
        position = 1
        while position < len(text):
            rest = text[position:]
            if rest.startswith(".."):
                match = _NAME.match(text, position + 2)
                if match is None:
                    raise ValueError(
                        f"expected a member name after '..' at character {position + 3}"
                    )
                steps.append(Step("descend", name=match.group()))
                position = match.end()
            elif rest.startswith(".*"):
                steps.append(Step("each"))
                position += 2
            elif rest.startswith("."):
                match = _NAME.match(text, position + 1)
                if match is None:
                    raise ValueError(
                        f"expected a member name after '.' at character {position + 2}"
                        " (quote unusual names as $['my name'])"
                    )
                steps.append(Step("key", name=match.group()))
                position = match.end()
            elif rest.startswith("[*]"):
                steps.append(Step("each"))
                position += 3
            elif (index := _INDEX.match(text, position)) is not None:
                steps.append(Step("index", index=int(index.group(1))))
                position = index.end()
            elif (quoted := _QUOTED.match(text, position)) is not None:
                name = re.sub(r"\\(.)", r"\1", quoted.group(1))
                steps.append(Step("key", name=name))
                position = quoted.end()
            else:
                raise ValueError(
                    f"unexpected {rest[0]!r} at character {position + 1};"
                    " supported: .name, ['name'], [*], [N], .*, ..name"
                )
        if not steps:
            raise ValueError("the path '$' names the whole payload; name a field inside it")
        return cls(text, tuple(steps))

    @property
    def is_simple(self) -> bool:
        """True when every step is a plain member name (the common, fastest case)."""
        return all(step.kind == "key" for step in self.steps)

    def locate(self, document: Any) -> list[Location]:
        """Every place this path names in ``document``, outermost first, in document order."""
        if self.is_simple:
            node = document
            steps = self.steps
            for step in steps[:-1]:
                if type(node) is not dict:
                    return []
                node = node.get(step.name)
            if type(node) is dict and steps[-1].name in node:
                return [(node, steps[-1].name)]
            return []
        found: list[Location] = []
        _walk(document, self.steps, 0, None, found)
        return found


def _walk(
    node: Any, steps: tuple[Step, ...], at: int, place: Location | None, out: list[Location]
) -> None:
    if at == len(steps):
        if place is not None:
            out.append(place)
        return
    step = steps[at]
    if step.kind == "key":
        if type(node) is dict and step.name in node:
            _walk(node[step.name], steps, at + 1, (node, step.name), out)
    elif step.kind == "index":
        if type(node) is list and step.index < len(node):
            _walk(node[step.index], steps, at + 1, (node, step.index), out)
    elif step.kind == "each":
        for key, child in _children(node):
            _walk(child, steps, at + 1, (node, key), out)
    else:  # descend: the member at this level, then at every depth below
        for container, key in _descendants_named(node, step.name):
            _walk(container[key], steps, at + 1, (container, key), out)


def _children(node: Any) -> Iterator[tuple[Any, Any]]:
    if type(node) is dict:
        yield from list(node.items())
    elif type(node) is list:
        yield from enumerate(list(node))


def _descendants_named(node: Any, name: str) -> Iterator[Location]:
    stack = [node]
    while stack:
        current = stack.pop()
        if type(current) is dict:
            if name in current:
                yield (current, name)
            stack.extend(
                reversed([value for value in current.values() if type(value) in (dict, list)])
            )
        elif type(current) is list:
            stack.extend(reversed([value for value in current if type(value) in (dict, list)]))


def render(path: tuple[Any, ...]) -> str:
    """A concrete location as a path, for humans: ('a', 0, 'b c') -> $.a[0]['b c']."""
    parts = ["$"]
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _NAME.fullmatch(part):
            parts.append(f".{part}")
        else:
            escaped = part.replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"['{escaped}']")
    return "".join(parts)
