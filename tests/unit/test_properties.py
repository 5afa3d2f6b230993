"""Properties that must hold for every payload, not only the examples we thought of."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.policy import Engine, MemoryKeyRing, Message
from bridge.policy.keyring import KeyVersion
from bridge.policy.model import ResidencyPolicy
from tests.conftest import policy_from_text

PLANTING = policy_from_text("""\
apiVersion: rbridge/v1
kind: ResidencyPolicy
metadata: {name: planting}
spec:
  destinations: {eu: {jurisdiction: EU}}
  keys: [k]
  rules:
    - name: scrub
      match: {subjects: ["x"]}
      decision: allow
      destinations: [eu]
      transform:
        - {path: "$..dropme", action: drop}
        - {path: "$..tokme", action: tokenize, key: k}
        - {path: "$..hashme", action: hash, key: k}
        - {path: "$..notes", action: mask, detectors: [email, us_ssn, credit_card]}
""")
KEYS = MemoryKeyRing()
KEYS.add(KeyVersion("k", 1, bytes(range(64))))
ENGINE = Engine(PLANTING.policy, KEYS)

# Plain words and small numbers trip no detector, so any deny would be a real finding.
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", max_size=12)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
scalars = st.one_of(words, st.integers(-1000, 1000), st.booleans(), st.none())
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=4)),
    max_leaves=20,
)
secrets = st.from_regex(r"SECRET-[A-Z0-9]{6,12}", fullmatch=True)


def plant(document: Any, value: Any, choices: list[int]) -> dict[str, Any]:
    """Put ``value`` somewhere inside ``document`` (a dict at the top), following ``choices``."""
    root: dict[str, Any] = {"root": document}
    node: Any = root
    for choice in choices:
        children = [
            c
            for c in (node.values() if isinstance(node, dict) else node)
            if isinstance(c, dict | list)
        ]
        if not children:
            break
        node = children[choice % len(children)]
    holder = {"payload": value}
    if isinstance(node, dict):
        node[f"k{len(node)}"] = holder
    else:
        node.append(holder)
    return root


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=documents,
    secret=secrets,
    action=st.sampled_from(["dropme", "tokme", "hashme"]),
    wrap=st.booleans(),
    choices=st.lists(st.integers(0, 10), max_size=5),
)
def test_a_planted_value_under_a_transformed_path_never_leaves(
    document: Any, secret: str, action: str, wrap: bool, choices: list[int]
) -> None:
    """Wherever a value sits under a dropped, tokenized or hashed path, it is not in the output."""
    value = {action: {"inner": [secret]}} if wrap else {action: secret}
    payload = orjson.dumps(plant(document, value, choices))
    decision = ENGINE.evaluate(Message("x", payload))
    assert decision.allowed, decision.reason
    assert decision.payload is not None
    assert secret.encode() not in decision.payload


@settings(max_examples=300, deadline=None)
@given(
    before=words,
    after=words,
    user=names,
    kind=st.sampled_from(["email", "ssn", "card"]),
    document=documents,
    choices=st.lists(st.integers(0, 10), max_size=5),
)
def test_a_sensitive_value_in_masked_free_text_never_leaves(
    before: str, after: str, user: str, kind: str, document: Any, choices: list[int]
) -> None:
    """E-mails, SSNs and card numbers inside masked notes are replaced wherever the notes are."""
    secret = {"email": f"{user}@example.org", "ssn": "219-09-9999", "card": "4012 8888 8888 1881"}[
        kind
    ]
    payload = orjson.dumps(plant(document, {"notes": f"{before} {secret} {after}"}, choices))
    decision = ENGINE.evaluate(Message("x", payload))
    assert decision.allowed, decision.reason
    assert decision.payload is not None
    assert secret.encode() not in decision.payload


@settings(max_examples=200, deadline=None)
@given(document=documents, secret=secrets)
def test_decisions_are_deterministic(document: Any, secret: str) -> None:
    """The same message gives the same decision and the same bytes, every time."""
    payload = orjson.dumps({"doc": document, "tokme": secret, "hashme": secret})
    first = ENGINE.evaluate(Message("x", payload))
    second = Engine(PLANTING.policy, KEYS).evaluate(Message("x", payload))
    assert first == second


# --- adding a deny rule never lets more out -----------------------------------------------

TOKENS = ["a", "b", "c"]
patterns = st.lists(st.sampled_from([*TOKENS, "*"]), min_size=1, max_size=3).flatmap(
    lambda parts: st.sampled_from([".".join(parts), ".".join([*parts, ">"])])
)
subjects = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=4).map(".".join)
levels = st.sampled_from(["public", "internal", "confidential", "restricted"])
classes = st.one_of(st.none(), st.lists(levels, min_size=1, max_size=4, unique=True))


def rule(
    index: int, verdict: str, pattern: str, classification: list[str] | None
) -> dict[str, Any]:
    match: dict[str, Any] = {"subjects": [pattern]}
    if classification is not None:
        match["classification"] = classification
    body: dict[str, Any] = {"name": f"r{index}-{verdict}", "match": match, "decision": verdict}
    if verdict == "allow":
        body["destinations"] = ["eu"]
    return body


def engine_of(rules: list[dict[str, Any]]) -> Engine:
    policy = ResidencyPolicy.model_validate(
        {
            "apiVersion": "rbridge/v1",
            "kind": "ResidencyPolicy",
            "metadata": {"name": "p"},
            "spec": {"destinations": {"eu": {"jurisdiction": "EU"}}, "rules": rules},
        }
    )
    return Engine(policy, MemoryKeyRing())


@settings(max_examples=300, deadline=None)
@given(
    base=st.lists(st.tuples(st.sampled_from(["allow", "deny"]), patterns, classes), max_size=5),
    extra=st.tuples(patterns, classes),
    position=st.integers(0, 5),
    messages=st.lists(st.tuples(subjects, levels), min_size=1, max_size=10),
)
def test_one_more_deny_rule_never_lets_more_out(
    base: list[tuple[str, str, list[str] | None]],
    extra: tuple[str, list[str] | None],
    position: int,
    messages: list[tuple[str, str]],
) -> None:
    """Inserting a deny rule anywhere: whatever the bigger policy allows, the smaller one did."""
    rules = [
        rule(i, verdict, pattern, levels_) for i, (verdict, pattern, levels_) in enumerate(base)
    ]
    stricter = list(rules)
    stricter.insert(min(position, len(rules)), rule(99, "deny", *extra))
    loose, strict = engine_of(rules), engine_of(stricter)
    for subject, level in messages:
        message = Message(subject, b"{}", {"Rb-Class": level})
        after = strict.evaluate(message)
        if after.allowed:
            before = loose.evaluate(message)
            assert before.allowed
            assert (before.payload, before.destinations) == (after.payload, after.destinations)
