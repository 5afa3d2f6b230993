"""Loading policy files: every problem at once, each with its place, a code and a hint.

Validation runs in two passes over the same YAML: the pydantic models check each value's shape,
and :func:`_cross_references` checks what needs the whole document (declared destinations, keys
and detectors, duplicate names, shadowed rules). The second pass reads the raw data tolerantly,
so it still reports its findings when the first pass found problems elsewhere.
"""

from __future__ import annotations

import difflib
import hashlib
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bridge.errors import PolicyLoadError, Problem
from bridge.policy.detectors import BUILTIN_DETECTORS, DetectorSet, custom_detector
from bridge.policy.model import ResidencyPolicy
from bridge.policy.paths import FieldPath
from bridge.policy.shadowing import RuleShape, shadowed
from bridge.policy.source import MAX_POLICY_FILE_BYTES, Source, Trail, read_yaml
from bridge.policy.subjects import subject_error

POLICY_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A valid policy and where it came from."""

    policy: ResidencyPolicy
    file: str
    sha256: str
    source: Source

    def line_of_rule(self, index: int) -> int:
        return self.source.where(("spec", "rules", index))[0]


def load_policy_file(path: str | Path) -> LoadedPolicy:
    """Load one policy file, or raise :class:`PolicyLoadError` listing every problem."""
    file = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_POLICY_FILE_BYTES + 1)
    except OSError as error:
        problem = Problem(file, 1, 1, "unreadable", error.strerror or str(error))
        raise PolicyLoadError([problem]) from None
    return load_policy_bytes(file, data)


def load_policy_bytes(file: str, data: bytes) -> LoadedPolicy:
    """Load a policy from bytes; ``file`` names it in problems."""
    if len(data) > MAX_POLICY_FILE_BYTES:
        raise PolicyLoadError(
            [
                Problem(
                    file,
                    1,
                    1,
                    "too-large",
                    f"policy files are limited to {MAX_POLICY_FILE_BYTES} bytes",
                )
            ]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise PolicyLoadError(
            [Problem(file, line, 1, "not-utf8", "the file is not valid UTF-8")]
        ) from None
    source, problems = read_yaml(file, text)
    if problems:
        raise PolicyLoadError(problems)
    if not isinstance(source.data, dict):
        raise PolicyLoadError(
            [source.problem((), "not-a-policy", "a policy file holds a mapping at the top")]
        )
    policy: ResidencyPolicy | None = None
    try:
        policy = ResidencyPolicy.model_validate(source.data)
    except ValidationError as error:
        problems.extend(_from_validation(source, error))
    problems.extend(_cross_references(source))
    if problems:
        raise PolicyLoadError(sorted(set(problems), key=lambda p: (p.line, p.column, p.code)))
    assert policy is not None
    return LoadedPolicy(policy, file, hashlib.sha256(data).hexdigest(), source)


def policy_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into the policy files they hold (``*.yaml``, ``*.yml``), sorted."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.suffix in POLICY_SUFFIXES and p.is_file())
            )
        else:
            found.append(path)
    return found


def load_policies(paths: Iterable[str | Path]) -> list[LoadedPolicy]:
    """Load every policy under ``paths``; raise once with the problems of all files."""
    loaded: list[LoadedPolicy] = []
    problems: list[Problem] = []
    files = policy_files(paths)
    if not files:
        raise PolicyLoadError(
            [Problem(", ".join(map(str, paths)), 1, 1, "no-policy", "no policy files found")]
        )
    for file in files:
        try:
            loaded.append(load_policy_file(file))
        except PolicyLoadError as error:
            problems.extend(error.problems)
    if problems:
        raise PolicyLoadError(problems)
    return loaded


# --- first pass: pydantic errors, placed and explained -------------------------------------


def _from_validation(source: Source, error: ValidationError) -> Iterator[Problem]:
    for item in error.errors(include_url=False):
        trail: Trail = tuple(part for part in item["loc"] if isinstance(part, str | int))
        kind = item["type"]
        value = item.get("input")
        if (
            kind == "too_short"
            and isinstance(value, list)
            and len(value) >= item.get("ctx", {}).get("min_length", 1)
        ):
            continue  # pydantic adds this after a bad item of a list that is not short at all
        if kind == "extra_forbidden":
            key = str(trail[-1])
            known = _known_keys(trail[:-1])
            yield source.problem(
                trail, "unknown-key", f"unknown key {key!r}{_hint(key, known)}", key=True
            )
        elif kind == "missing":
            yield source.problem(trail[:-1], "missing-key", f"missing required key {trail[-1]!r}")
        elif kind == "literal_error":
            expected = item.get("ctx", {}).get("expected", "")
            yield source.problem(trail, "bad-value", f"{_short(value)} is not one of {expected}")
        elif kind == "string_pattern_mismatch":
            yield source.problem(
                trail, "bad-name", f"{_short(value)} does not match {item['ctx']['pattern']}"
            )
        elif kind == "value_error":
            message = str(item["msg"]).removeprefix("Value error, ")
            code = (
                "bad-subject"
                if "subject pattern" in message
                else "bad-path"
                if "bad path" in message
                else "invalid"
            )
            yield source.problem(trail, code, message)
        else:
            yield source.problem(trail, "invalid", f"{item['msg'].lower()}, got {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _hint(word: str, known: Sequence[str]) -> str:
    if not known:
        return ""
    close = difflib.get_close_matches(word, known, n=1)
    listing = ", ".join(known)
    return f" (did you mean {close[0]!r}? known: {listing})" if close else f" (known: {listing})"


def _known_keys(trail: Trail) -> list[str]:
    """The field names allowed at ``trail`` in the model tree (for 'did you mean' hints)."""
    model: Any = ResidencyPolicy
    for part in trail:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            # A dict of models: the part is a user-chosen name.
            model = _model_in(model)
            continue
        info = model.model_fields.get(part)
        if info is None:
            return []
        model = _model_in(info.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (tuple, list, dict, typing.Union, types.UnionType):
        for argument in reversed(typing.get_args(annotation)):
            found = _model_in(argument)
            if found is not None:
                return found
    if origin is typing.Annotated:
        return _model_in(typing.get_args(annotation)[0])
    return None


# --- second pass: what needs the whole policy --------------------------------------------


def _items(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if isinstance(value, list) else []


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> list[tuple[int, str]]:
    return [(index, item) for index, item in _items(value) if isinstance(item, str)]


def _cross_references(source: Source) -> list[Problem]:
    problems: list[Problem] = []
    spec = _mapping(_mapping(source.data).get("spec"))
    destinations = sorted(key for key in _mapping(spec.get("destinations")) if isinstance(key, str))
    keys = sorted(name for _, name in _strings(spec.get("keys")))
    detectors = list(BUILTIN_DETECTORS)
    for detector_name, declared in _mapping(spec.get("detectors")).items():
        trail: Trail = ("spec", "detectors", detector_name)
        if detector_name in BUILTIN_DETECTORS:
            problems.append(
                source.problem(
                    trail,
                    "detector-name-taken",
                    f"{detector_name!r} is a built-in detector; choose another name",
                    key=True,
                )
            )
            continue
        detectors.append(detector_name)
        pattern = _mapping(declared).get("pattern")
        if isinstance(pattern, str):
            try:
                custom_detector(detector_name, pattern)
            except ValueError as error:
                problems.append(
                    source.problem(
                        (*trail, "pattern"), "bad-pattern", f"detector {detector_name!r}: {error}"
                    )
                )

    compiled = _compiled_detectors(source, spec, problems)

    def check_name(trail: Trail, value: str, known: list[str], code: str, what: str) -> None:
        if value not in known:
            hint = _hint(value, known)
            if code == "unknown-key-name":
                hint = f" (declare it in spec.keys{'; ' + hint[2:] if hint else ')'}"
            problems.append(source.problem(trail, code, f"unknown {what} {value!r}{hint}"))

    rule_names: dict[str, int] = {}
    shapes: list[RuleShape | None] = []
    for index, rule in _items(spec.get("rules")):
        rule = _mapping(rule)
        base: Trail = ("spec", "rules", index)
        name = rule.get("name")
        if isinstance(name, str):
            if name in rule_names:
                problems.append(
                    source.problem(
                        (*base, "name"),
                        "duplicate-rule",
                        f"rule name {name!r} is already used on line {rule_names[name]}",
                    )
                )
            else:
                rule_names[name] = source.where((*base, "name"))[0]
        for position, destination in _strings(rule.get("destinations")):
            check_name(
                (*base, "destinations", position),
                destination,
                destinations,
                "unknown-destination",
                "destination",
            )
        for position, detector in _strings(rule.get("permit")):
            check_name(
                (*base, "permit", position), detector, detectors, "unknown-detector", "detector"
            )
        for position, transform in _items(rule.get("transform")):
            transform = _mapping(transform)
            place: Trail = (*base, "transform", position)
            if isinstance(transform.get("key"), str):
                check_name(
                    (*place, "key"),
                    transform["key"],
                    keys,
                    "unknown-key-name",
                    "key name",
                )
            named = _strings(transform.get("detectors"))
            for at, detector in named:
                check_name(
                    (*place, "detectors", at), detector, detectors, "unknown-detector", "detector"
                )
            order = tuple(detector for _, detector in named)
            if compiled is not None and order and set(order) <= set(compiled.names):
                try:
                    compiled.together(order)
                except ValueError as error:
                    problems.append(
                        source.problem((*place, "detectors"), "bad-pattern", f"{error}")
                    )
        shapes.append(_shape(rule))
    problems.extend(_shadowing(source, spec.get("rules"), shapes))

    for section, what in (("replies", "reply rule"), ("inbound", "inbound rule")):
        seen: set[str] = set()
        for index, reply in _items(spec.get(section)):
            reply = _mapping(reply)
            base = ("spec", section, index)
            name = reply.get("name")
            if isinstance(name, str):
                if name in seen:
                    problems.append(
                        source.problem(
                            (*base, "name"), "duplicate-rule", f"{what} name {name!r} is used twice"
                        )
                    )
                seen.add(name)
            for position, key in _strings(reply.get("keys")):
                check_name((*base, "keys", position), key, keys, "unknown-key-name", "key name")

    for index, case in _items(spec.get("tests")):
        case = _mapping(case)
        base = ("spec", "tests", index)
        subject = _mapping(case.get("message")).get("subject")
        if (
            isinstance(subject, str)
            and (problem := subject_error(subject, pattern=False)) is not None
        ):
            problems.append(
                source.problem(
                    (*base, "message", "subject"), "bad-subject", f"{subject!r}: {problem}"
                )
            )
        expect = _mapping(case.get("expect"))
        if isinstance(expect.get("rule"), str):
            check_name(
                (*base, "expect", "rule"), expect["rule"], list(rule_names), "unknown-rule", "rule"
            )
        if isinstance(expect.get("destination"), str):
            check_name(
                (*base, "expect", "destination"),
                expect["destination"],
                destinations,
                "unknown-destination",
                "destination",
            )
        for field in ("absent", "present"):
            for position, path in _strings(expect.get(field)):
                try:
                    FieldPath.parse(path)
                except ValueError as error:
                    problems.append(
                        source.problem(
                            (*base, "expect", field, position),
                            "bad-path",
                            f"bad path {path!r}: {error}",
                        )
                    )
    return problems


def _compiled_detectors(
    source: Source, spec: dict[str, Any], problems: list[Problem]
) -> DetectorSet | None:
    """Every detector compiled together, as the engine will (RE2 may refuse in combination
    what it accepts one by one); None, with a problem, when that fails."""
    custom = []
    for name, declared in _mapping(spec.get("detectors")).items():
        pattern = _mapping(declared).get("pattern")
        if name in BUILTIN_DETECTORS or not isinstance(pattern, str):
            continue
        try:
            custom.append(custom_detector(name, pattern))
        except ValueError:
            return None  # reported for that detector on its own
    try:
        return DetectorSet.of([*BUILTIN_DETECTORS.values(), *custom])
    except ValueError as error:
        problems.append(source.problem(("spec", "detectors"), "bad-pattern", str(error)))
        return None


def _shape(rule: Any) -> RuleShape | None:
    """A rule's subjects and classifications, or None when they are too malformed to judge."""
    match = _mapping(_mapping(rule).get("match"))
    subjects = [text for _, text in _strings(match.get("subjects"))]
    if not subjects or any(subject_error(text, pattern=True) for text in subjects):
        return None
    levels = match.get("classification")
    classes = (
        frozenset(level for _, level in _strings(levels)) if isinstance(levels, list) else None
    )
    return RuleShape(tuple(tuple(text.split(".")) for text in subjects), classes)


def _shadowing(source: Source, rules: Any, shapes: list[RuleShape | None]) -> list[Problem]:
    """A problem for each rule that the rules above it together leave nothing to match."""
    items = _items(rules)

    def named(position: int) -> str:
        name = _mapping(items[position][1]).get("name")
        line = source.where(("spec", "rules", position))[0]
        return f"{str(name) if isinstance(name, str) else f'#{position}'!r} (line {line})"

    found: list[Problem] = []
    for index, covering in shadowed(shapes).items():
        rule = _mapping(items[index][1]).get("name", f"#{index}")
        if len(covering) == 1:
            by = f"rule {named(covering[0])} matches every message it would"
        else:
            listed = ", ".join(named(position) for position in covering[:4])
            more = f" and {len(covering) - 4} more" if len(covering) > 4 else ""
            by = f"rules {listed}{more} together match every message it would"
        found.append(
            source.problem(
                ("spec", "rules", index, "match"),
                "shadowed-rule",
                f"rule {str(rule)!r} can never match: {by}; move it above them or narrow them",
            )
        )
    return found
