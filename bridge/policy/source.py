"""Reading YAML with the place of every value, so problems can say file:line:col.

PyYAML composes a node tree that keeps marks; we build plain Python data from it ourselves and
record, for each path of keys and indexes, where the value (and, for mapping entries, the key)
starts. Anchors and aliases are refused: a policy has no need for them, and expanding them is
how a small file becomes a huge one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from bridge.errors import Problem

MAX_POLICY_FILE_BYTES = 1 << 20
Trail = tuple[str | int, ...]
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
)


@dataclass(slots=True)
class Source:
    """Data read from one YAML document, with positions (1-based line and column)."""

    file: str
    data: Any
    values: dict[Trail, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Trail, tuple[int, int]] = field(default_factory=dict)
    text: str = ""

    def where(self, trail: Trail, *, key: bool = False) -> tuple[int, int]:
        """The position of the value (or key) at ``trail``, or of its nearest known parent."""
        table = self.keys if key else self.values
        if trail in table:
            return table[trail]
        for cut in range(len(trail), -1, -1):
            if trail[:cut] in self.values:
                return self.values[trail[:cut]]
        return (1, 1)

    def problem(self, trail: Trail, code: str, message: str, *, key: bool = False) -> Problem:
        line, column = self.where(trail, key=key)
        return Problem(self.file, line, column, code, message)


class _Reader:
    def __init__(self, file: str) -> None:
        self.source = Source(file, None)
        self.problems: list[Problem] = []
        self.constructor = SafeConstructor()
        self.seen: set[int] = set()

    def problem(self, node: yaml.Node, code: str, message: str) -> None:
        mark = node.start_mark
        self.problems.append(
            Problem(self.source.file, mark.line + 1, mark.column + 1, code, message)
        )

    def build(self, node: yaml.Node, trail: Trail) -> Any:
        if id(node) in self.seen:
            self.problem(node, "yaml-alias", "anchors and aliases are not supported in policies")
            return None
        self.seen.add(id(node))
        if node.tag not in _PLAIN_TAGS:
            self.problem(node, "yaml-tag", f"unsupported tag {node.tag!r}: policies use plain YAML")
            return None
        self.source.values[trail] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.scalar(key_node)
                if not isinstance(key, str):
                    self.problem(key_node, "bad-key", f"keys must be strings, got {key!r}")
                    continue
                if key in result:
                    self.problem(
                        key_node, "duplicate-key", f"key {key!r} appears twice in this mapping"
                    )
                    continue
                self.source.keys[(*trail, key)] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                result[key] = self.build(value_node, (*trail, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*trail, index)) for index, item in enumerate(node.value)]
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, "bad-key", "mapping keys must be plain scalars")
            return None
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as error:
            self.problem(node, "yaml-tag", f"unsupported value: {getattr(error, 'problem', error)}")
            return None


# libyaml when PyYAML was built with it (the pure-Python parser takes ~40 s for 1 MiB).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Deeper nesting than any policy needs; also keeps the recursive composer off the stack's limit.
MAX_NESTING = 64


def _too_deep(file: str, text: str) -> Problem | None:
    """A problem at the first collection nested deeper than MAX_NESTING, found from the parser's
    events (an iterative state machine), before the recursive composer could overflow."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    mark = event.start_mark
                    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                    return Problem(
                        file,
                        line,
                        column,
                        "too-deep",
                        f"nested deeper than {MAX_NESTING} levels; policies need far fewer",
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None  # a syntax error: composing reports it with its place
    return None


def read_yaml(file: str, text: str) -> tuple[Source, list[Problem]]:
    """Parse one YAML document; return the data with positions, and the problems found."""
    reader = _Reader(file)
    reader.source.text = text
    deep = _too_deep(file, text)
    if deep is not None:
        return reader.source, [deep]
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.composer.ComposerError as error:
        # A second document, or an undefined alias.
        return reader.source, [_from_marked(file, error, "yaml-syntax")]
    except yaml.MarkedYAMLError as error:
        return reader.source, [_from_marked(file, error, "yaml-syntax")]
    except yaml.YAMLError as error:
        return reader.source, [Problem(file, 1, 1, "yaml-syntax", str(error))]
    if root is None:
        return reader.source, [Problem(file, 1, 1, "empty", "the file holds no YAML document")]
    reader.source.data = reader.build(root, ())
    return reader.source, reader.problems


def _from_marked(file: str, error: yaml.MarkedYAMLError, code: str) -> Problem:
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    message = " ".join(part for part in (error.context, error.problem) if part) or str(error)
    return Problem(file, line, column, code, message)
