"""Loading policies: every problem at once, each as file:line:col: code: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import PolicyLoadError, Problem
from bridge.policy import load_policies, load_policy_bytes, load_policy_file
from bridge.policy.source import MAX_POLICY_FILE_BYTES
from tests.conftest import POLICIES, ROOT

BROKEN = ROOT / "tests" / "data" / "broken.yaml"

MINIMAL = """\
apiVersion: rbridge/v1
kind: ResidencyPolicy
metadata: {name: minimal}
spec:
  rules:
    - name: nothing-leaves
      match: {subjects: [">"]}
      decision: deny
"""


def problems_of(text: str | bytes, name: str = "p.yaml") -> list[Problem]:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_bytes(name, data)
    return list(caught.value.problems)


def codes(text: str | bytes) -> list[str]:
    return [problem.code for problem in problems_of(text)]


def test_every_problem_is_reported_at_once_with_its_place() -> None:
    """One run lists all problems of a file, in file order, each with line, column and code."""
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_file(BROKEN)
    found = [(p.line, p.column, p.code) for p in caught.value.problems]
    assert found == [
        (9, 5, "detector-name-taken"),
        (10, 21, "bad-pattern"),
        (17, 26, "bad-subject"),
        (19, 7, "unknown-key"),
        (21, 14, "shadowed-rule"),
        (23, 22, "unknown-destination"),
        (25, 18, "bad-path"),
        (26, 51, "unknown-key-name"),
        (27, 55, "unknown-detector"),
        (28, 16, "unknown-detector"),
        (29, 13, "duplicate-rule"),
        (31, 17, "bad-value"),
        (34, 26, "bad-subject"),
        (35, 39, "unknown-rule"),
    ]
    assert all(p.file == str(BROKEN) for p in caught.value.problems)


def test_messages_carry_the_offending_value_and_a_hint() -> None:
    """Unknown names come with 'did you mean' and the known ones."""
    with pytest.raises(PolicyLoadError) as caught:
        load_policy_file(BROKEN)
    text = "\n".join(map(str, caught.value.problems))
    assert (
        f"{BROKEN}:19:7: unknown-key: unknown key 'destinatons' (did you mean 'destinations'?"
        in text
    )
    assert "unknown detector 'ssn' (did you mean 'us_ssn'?" in text
    assert (
        "unknown key name 'pseudonym' (declare it in spec.keys; did you mean 'pseudonyms'?" in text
    )
    assert "rule 'shadowed' can never match: rule 'everything-internal' (line 12)" in text
    assert "bad path 'claimant.ssn': a path starts with '$'" in text


def test_the_bundled_policies_load() -> None:
    """Every example policy is valid."""
    loaded = load_policies([POLICIES])
    assert {item.policy.metadata.name for item in loaded} == {
        "claims",
        "healthcare",
        "telecom-support",
        "hr",
    }


def test_a_minimal_policy_loads_and_models_are_frozen() -> None:
    """The smallest policy works; loaded models cannot be changed afterwards."""
    loaded = load_policy_bytes("m.yaml", MINIMAL.encode())
    assert loaded.policy.spec.defaults.classification == "confidential"
    assert loaded.policy.spec.limits.max_depth == 64
    with pytest.raises(Exception, match="frozen"):
        loaded.policy.metadata.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("a: [1, 2\n", "yaml-syntax"),
        ("a: 1\n---\nb: 2\n", "yaml-syntax"),
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("- just\n- a list\n", "not-a-policy"),
        ("anchor: &x {a: 1}\nagain: *x\n", "yaml-alias"),
        ("a: 1\na: 2\n", "duplicate-key"),
        ("a: !!python/object:os.system {}\n", "yaml-tag"),
        ("? [a, b]\n: 1\n", "bad-key"),
        ("1: x\n", "bad-key"),
    ],
)
def test_yaml_level_garbage(text: str, code: str) -> None:
    """Broken YAML, several documents, aliases, duplicate keys, unsafe tags: clear codes."""
    assert code in codes(text)


def test_non_utf8_file_names_the_line() -> None:
    """A file that is not UTF-8 is refused with the line of the first bad byte."""
    (problem,) = problems_of(b"apiVersion: rbridge/v1\nkind: \xff\n")
    assert (problem.line, problem.code) == (2, "not-utf8")


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    """Policy files have a size limit, checked before parsing."""
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"#" * (MAX_POLICY_FILE_BYTES + 1))
    with pytest.raises(PolicyLoadError, match="too-large"):
        load_policy_file(path)


def test_unreadable_or_missing_file(tmp_path: Path) -> None:
    """A missing file is a problem with a code, not a traceback."""
    with pytest.raises(PolicyLoadError, match="unreadable"):
        load_policy_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("change", "code", "fragment"),
    [
        (
            ("apiVersion: rbridge/v1", "apiVersion: rbridge/v2"),
            "bad-value",
            "'rbridge/v2' is not one of",
        ),
        (("kind: ResidencyPolicy", "kind: Policy"), "bad-value", "'Policy'"),
        (
            ("metadata: {name: minimal}", "metadata: {name: Minimal Policy}"),
            "bad-name",
            "'Minimal Policy'",
        ),
        (("metadata: {name: minimal}", "metadata: {revision: 1}"), "missing-key", "'name'"),
        (
            ("      decision: deny", "      decision: allow"),
            "invalid",
            "needs at least one destination",
        ),
        (
            ("      decision: deny", "      decision: deny\n      destinations: [x]"),
            "invalid",
            "takes no destinations",
        ),
        (('match: {subjects: [">"]}', "match: {subjects: []}"), "invalid", "at least 1"),
        (
            ('match: {subjects: [">"]}', 'match: {subjects: [">"], classification: [secret]}'),
            "bad-value",
            "'secret'",
        ),
        (("spec:", "spec:\n  limits: {max_depth: 0}"), "invalid", "greater than or equal to 1"),
        (("spec:", "spec:\n  colour: blue"), "unknown-key", "unknown key 'colour'"),
        (
            ("spec:", "spec:\n  inbound: [{name: in, match: {subjects: [rb.out.x]}}]"),
            "bad-subject",
            "belong to the bridge or NATS",
        ),
        (
            ("spec:", "spec:\n  inbound: [{name: in, match: {subjects: ['$JS.API.>']}}]"),
            "bad-subject",
            "belong to the bridge or NATS",
        ),
        (
            ("spec:", "spec:\n  inbound: [{name: in, match: {subjects: ['*.updates']}}]"),
            "bad-subject",
            "leading wildcard",
        ),
        (
            ("spec:", "spec:\n  inbound: [{match: {subjects: [claims.updates]}}]"),
            "missing-key",
            "'name'",
        ),
    ],
)
def test_shape_errors_are_placed_and_named(
    change: tuple[str, str], code: str, fragment: str
) -> None:
    """Wrong values, names, missing and unknown keys each get a code and the value."""
    found = problems_of(MINIMAL.replace(*change))
    assert any(p.code == code and fragment in p.message for p in found), found


def test_transform_options_must_fit_the_action() -> None:
    """hash/tokenize need a key; drop/mask take none; detectors are for mask only."""
    base = MINIMAL.replace(
        "      decision: deny",
        "      decision: allow\n      destinations: [eu]\n      transform:\n        - TRANSFORM",
    ).replace("spec:", "spec:\n  destinations: {eu: {jurisdiction: EU}}\n  keys: [k]")
    cases = {
        "{path: $.a, action: hash}": "needs a 'key'",
        "{path: $.a, action: drop, key: k}": "takes no 'key'",
        "{path: $.a, action: hash, key: k, detectors: [email]}": "only applies to action 'mask'",
        "{path: $.a, action: shred}": "is not one of",
    }
    for transform, fragment in cases.items():
        found = problems_of(base.replace("TRANSFORM", transform))
        assert any(fragment in p.message for p in found), (transform, found)


def test_shadowing_respects_classification() -> None:
    """A later rule for a class the earlier rule does not cover is not shadowed."""
    text = """\
apiVersion: rbridge/v1
kind: ResidencyPolicy
metadata: {name: s}
spec:
  rules:
    - {name: a, match: {subjects: ["docs.>"], classification: [internal]}, decision: deny}
    - {name: b, match: {subjects: ["docs.parse"], classification: [internal, public]}, decision: deny}
    - {name: c, match: {subjects: ["docs.parse"], classification: [public]}, decision: deny}
"""
    found = problems_of(text)
    assert [(p.line, p.code) for p in found] == [(8, "shadowed-rule")]
    assert "rule 'c' can never match: rule 'b'" in found[0].message


def test_a_directory_reports_the_problems_of_every_file(tmp_path: Path) -> None:
    """Loading several files collects problems from all of them before failing."""
    (tmp_path / "a.yaml").write_text("kind: [\n")
    (tmp_path / "b.yml").write_text(MINIMAL.replace("minimal", "BAD NAME"))
    (tmp_path / "c.txt").write_text("ignored")
    with pytest.raises(PolicyLoadError) as caught:
        load_policies([tmp_path])
    assert sorted({Path(p.file).name for p in caught.value.problems}) == ["a.yaml", "b.yml"]


def test_an_empty_directory_is_a_problem(tmp_path: Path) -> None:
    """No policy files found is an error, not an empty success."""
    with pytest.raises(PolicyLoadError, match="no-policy"):
        load_policies([tmp_path])
