"""Rules that can never match: by one earlier rule or by several together, exactly."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import PolicyLoadError
from bridge.policy import shadowing
from bridge.policy.shadowing import CLASSES, RuleShape, shadowed
from bridge.policy.subjects import SubjectPattern
from tests.conftest import policy_from_text


def shape(*subjects: str, classes: list[str] | None = None) -> RuleShape:
    return RuleShape(
        tuple(tuple(s.split(".")) for s in subjects),
        frozenset(classes) if classes is not None else None,
    )


@pytest.mark.parametrize(
    ("earlier", "later", "dead"),
    [
        ([shape("docs.>")], shape("docs.parse"), True),
        ([shape("docs.*"), shape("docs.*.>")], shape("docs.>"), True),
        ([shape("docs.*")], shape("docs.>"), False),
        ([shape("docs.a"), shape("docs.b")], shape("docs.*"), False),
        ([shape("docs.a"), shape("docs.*")], shape("docs.a", "docs.b"), True),
        (
            [shape("x.>", classes=["public", "internal"]), shape(">", classes=["confidential"])],
            shape("x.y", classes=None),
            False,  # restricted still reaches it
        ),
        (
            [
                shape("x.>", classes=["public", "internal"]),
                shape(">", classes=["confidential", "restricted"]),
            ],
            shape("x.y"),
            True,
        ),
        ([shape("*.b"), shape("a.*")], shape("a.b"), True),
        ([shape("*.*.c"), shape("a.>")], shape("*.b.c"), True),
        ([shape("*.*.c")], shape("*.b.>"), False),
    ],
)
def test_examples(earlier: list[RuleShape], later: RuleShape, dead: bool) -> None:
    """Covered by one, by several together, per classification, or not at all."""
    assert (len(earlier) in shadowed([*earlier, later])) is dead


TOKENS = ["a", "b"]
patterns = st.lists(st.sampled_from([*TOKENS, "*"]), min_size=1, max_size=3).flatmap(
    lambda parts: st.sampled_from([".".join(parts), ".".join([*parts, ">"])])
)
levels = st.one_of(st.none(), st.lists(st.sampled_from(CLASSES), min_size=1, unique=True))
rules = st.lists(
    st.tuples(st.lists(patterns, min_size=1, max_size=2), levels), min_size=1, max_size=5
)


def brute_force_dead(candidates: list[tuple[list[str], list[str] | None]], index: int) -> bool:
    """Every (subject, class) the rule matches is matched earlier: enumerate them all, over the
    tokens the rules name and one they do not, up to one token past the longest pattern."""
    longest = max(len(p.split(".")) for subjects, _ in candidates for p in subjects) + 1

    def matches(rule: tuple[list[str], list[str] | None], subject: list[str], level: str) -> bool:
        subjects, classes = rule
        return (classes is None or level in classes) and any(
            SubjectPattern.parse(p).matches(subject) for p in subjects
        )

    for length in range(1, longest + 1):
        for subject in itertools.product([*TOKENS, "fresh"], repeat=length):
            for level in CLASSES:
                if matches(candidates[index], list(subject), level) and not any(
                    matches(earlier, list(subject), level) for earlier in candidates[:index]
                ):
                    return False
    return True


@settings(max_examples=300, deadline=None)
@given(candidates=rules)
def test_agrees_with_enumerating_every_subject(
    candidates: list[tuple[list[str], list[str] | None]],
) -> None:
    """The trie walk says 'dead' exactly when brute force over all subjects does."""
    found = shadowed([shape(*subjects, classes=classes) for subjects, classes in candidates])
    for index in range(len(candidates)):
        assert (index in found) == brute_force_dead(candidates, index), (candidates, index)


def test_the_loader_names_the_rules_that_together_shadow_a_deny() -> None:
    """An allow for public and internal and one for the rest leave a later deny nothing."""
    with pytest.raises(PolicyLoadError) as caught:
        policy_from_text("""\
apiVersion: rbridge/v1
kind: ResidencyPolicy
metadata: {name: together}
spec:
  destinations: {eu: {jurisdiction: EU}}
  rules:
    - {name: low, match: {subjects: ["docs.>"], classification: [public, internal]}, decision: allow, destinations: [eu]}
    - {name: high, match: {subjects: ["docs.>"], classification: [confidential, restricted]}, decision: allow, destinations: [eu]}
    - {name: never, match: {subjects: ["docs.parse"]}, decision: deny}
""")
    (problem,) = caught.value.problems
    assert problem.code == "shadowed-rule"
    assert problem.line == 9
    assert "rules 'low' (line 7), 'high' (line 8) together match every message" in problem.message


def test_a_large_policy_is_checked_in_time_proportional_to_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """15,000 rules of literal subjects: each rule walks only its own branch of the trie (the
    pairwise check this replaces compared each rule with all earlier ones). With the work per
    rule capped at 32 steps (4 classifications x 3 tokens need 12), the duplicate at the end is still found: a walk that
    looked at the earlier rules one by one would run out and report nothing."""
    monkeypatch.setattr(shadowing, "WORK_PER_RULE", 32)
    shapes = [shape(f"team{n}.capability{n}") for n in range(15_000)]
    shapes.append(shape("team7.capability7"))
    assert shadowed(shapes) == {15_000: (7,)}
