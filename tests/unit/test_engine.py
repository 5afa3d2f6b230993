"""The decision: rule order, defaults, the leak guard, fail-closed errors, and replies."""

from __future__ import annotations

import orjson
import pytest

from bridge.errors import UnknownKeyError
from bridge.policy import Engine, LoadedPolicy, MemoryKeyRing, Message
from bridge.policy.keyring import KeyVersion
from bridge.policy.payload import PayloadError
from bridge.policy.transforms import FieldTransform
from tests.conftest import decide, engine_for, policy_from_text

ORDERED = """
apiVersion: rbridge/v1
kind: ResidencyPolicy
metadata: {name: ordered}
spec:
  defaults: {classification: internal}
  limits: {max_payload_bytes: 200, max_depth: 4}
  destinations:
    eu: {jurisdiction: EU}
    us: {jurisdiction: US}
  rules:
    - name: deny-secret
      match: {subjects: ["a.secret"]}
      decision: deny
    - name: internal-a
      match: {subjects: ["a.*"], classification: [internal]}
      decision: allow
      destinations: [eu]
    - name: any-a
      match: {subjects: ["a.>"]}
      decision: allow
      destinations: [us, eu]
      permit: [email]
"""


@pytest.fixture
def ordered() -> Engine:
    return engine_for(policy_from_text(ORDERED))


def test_first_matching_rule_decides(ordered: Engine) -> None:
    """Rules are read top to bottom like a firewall: the first match wins."""
    assert decide(ordered, "a.secret", {}).reason == "rule:deny-secret"
    assert decide(ordered, "a.x", {}, Rb_Class="internal").rule == "internal-a"
    assert decide(ordered, "a.x", {}, Rb_Class="public").rule == "any-a"
    assert decide(ordered, "a.x.y", {}, Rb_Class="internal").rule == "any-a"


def test_no_match_is_a_deny(ordered: Engine) -> None:
    """Nothing leaves by default."""
    decision = decide(ordered, "b.x", {})
    assert (decision.verdict, decision.reason, decision.rule, decision.payload) == (
        "deny",
        "no-matching-rule",
        None,
        None,
    )


def test_missing_classification_takes_the_policy_default(ordered: Engine) -> None:
    """Without Rb-Class the policy's default classification applies (here: internal)."""
    decision = decide(ordered, "a.x", {})
    assert decision.classification == "internal"
    assert decision.rule == "internal-a"


def test_default_default_is_confidential() -> None:
    """A policy that sets no default treats unlabelled messages as confidential."""
    text = ORDERED.replace("  defaults: {classification: internal}\n", "")
    decision = decide(engine_for(policy_from_text(text)), "a.x", {})
    assert decision.classification == "confidential"
    assert decision.rule == "any-a"


@pytest.mark.parametrize("value", ["secret", "INTERNAL", "", "internal\r\n"])
def test_an_invalid_classification_is_a_deny(ordered: Engine, value: str) -> None:
    """An unknown Rb-Class is not guessed at: deny."""
    assert decide(ordered, "a.x", {}, Rb_Class=value).reason == "bad-classification"


@pytest.mark.parametrize("subject", ["", "a..x", "a.*", "a.>", "a x", "a.x\r\n", "a." + "x" * 300])
def test_an_invalid_subject_is_a_deny(ordered: Engine, subject: str) -> None:
    """Wildcards, empty tokens, whitespace and control characters in a subject: deny."""
    assert decide(ordered, subject, {}).reason == "bad-subject"


def test_allowed_output_is_the_transformed_copy(claims_engine: Engine) -> None:
    """The output has the transforms applied; the input bytes are untouched."""
    raw = orjson.dumps({"claimant": {"name": "Jane Doe", "ssn": "123-45-6789"}, "notes": "ok"})
    before = bytes(raw)
    decision = claims_engine.evaluate(Message("docs.parse", raw, {"Rb-Class": "internal"}))
    assert decision.allowed
    assert raw == before
    assert decision.payload is not None
    output = orjson.loads(decision.payload)
    assert "ssn" not in output["claimant"]
    assert output["claimant"]["name"].startswith("tok:v1:")
    assert [(t.path, t.action, t.places) for t in decision.transforms] == [
        ("$.claimant.ssn", "drop", 1),
        ("$.claimant.name", "tokenize", 1),
        ("$.policy_number", "hash", 0),
        ("$.notes", "mask", 0),
    ]
    assert decision.destinations == ("cloud-eu",)
    assert (decision.policy, decision.revision) == ("claims", 7)


def test_leak_guard_denies_what_the_rule_does_not_permit(ordered: Engine) -> None:
    """A detected value left in the output turns an allow into a deny naming its class."""
    decision = decide(ordered, "a.x", {"note": "card 4111 1111 1111 1111"}, Rb_Class="internal")
    assert (decision.verdict, decision.reason, decision.payload) == (
        "deny",
        "leak-guard:credit_card",
        None,
    )


def test_leak_guard_lets_permitted_classes_through(ordered: Engine) -> None:
    """A class in the rule's permit list may remain."""
    assert decide(ordered, "a.x.y", {"contact": "desk@example.com"}).allowed
    assert (
        decide(ordered, "a.x.y", {"contact": "desk@example.com", "ip": "10.1.2.3"}).reason
        == "leak-guard:ipv4"
    )


def test_leak_guard_scans_keys_and_numbers_too(ordered: Engine) -> None:
    """Data smuggled into a member name or a number is found as well."""
    assert (
        decide(ordered, "a.x", {"jane@example.com": 1}, Rb_Class="internal").reason
        == "leak-guard:email"
    )
    assert (
        decide(ordered, "a.x", {"n": 4111111111111111}, Rb_Class="internal").reason
        == "leak-guard:credit_card"
    )


@pytest.mark.parametrize("glue", ["\n", "\t", "\\", '"', "\x01", "\u2028"])
def test_leak_guard_is_not_fooled_by_json_escapes(ordered: Engine, glue: str) -> None:
    """'\\n123-45-6789' serialises with a backslash-n glued to the number; it is still found."""
    decision = decide(ordered, "a.x", {"note": f"x{glue}123-45-6789{glue}y"}, Rb_Class="internal")
    assert decision.reason == "leak-guard:us_ssn"


def test_payload_problems_are_denies_with_their_code(ordered: Engine) -> None:
    """Malformed payloads on an allowed subject are denied, with the payload's own reason."""
    assert decide(ordered, "a.x", b"nope", Rb_Class="internal").reason == "payload:not-json"
    assert decide(ordered, "a.x", b"x" * 201, Rb_Class="internal").reason == "payload:too-large"
    assert (
        decide(ordered, "a.x", b'{"a":{"b":{"c":{"d":{}}}}}', Rb_Class="internal").reason
        == "payload:too-deep"
    )
    assert (
        decide(ordered, "a.x", b'{"a":1,"a":2}', Rb_Class="internal").reason
        == "payload:duplicate-key"
    )


def test_a_deny_rule_does_not_need_a_valid_payload(ordered: Engine) -> None:
    """Denied subjects are denied by their rule whatever the payload."""
    assert decide(ordered, "a.secret", b"\xff").reason == "rule:deny-secret"


def test_any_exception_while_deciding_is_a_deny(
    claims_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed: an unexpected error becomes a deny with reason error:<kind>, never a crash."""

    def explode(self: FieldTransform, document: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(FieldTransform, "apply", explode)
    decision = decide(claims_engine, "docs.parse", {"claimant": {"ssn": "1"}})
    assert (decision.verdict, decision.reason, decision.payload) == (
        "deny",
        "error:RuntimeError",
        None,
    )


def test_compiling_needs_every_named_key(claims: LoadedPolicy) -> None:
    """A policy that names a key the store lacks does not compile."""
    with pytest.raises(UnknownKeyError, match="correlation"):
        Engine(claims.policy, MemoryKeyRing.ephemeral(["pseudonyms"]))


def test_replies_reidentify_named_tokens_only(claims_engine: Engine) -> None:
    """Tokens at the reply rule's paths become names again; others stay tokens."""
    sent = decide(claims_engine, "docs.parse", {"claimant": {"name": "Jane Doe"}, "notes": "n"})
    assert sent.payload is not None
    token = orjson.loads(sent.payload)["claimant"]["name"]
    reply = orjson.dumps({"claimant": {"name": token}, "copy": token, "total": 2450})
    result = claims_engine.evaluate_reply("docs.parse", reply)
    assert (result.rule, result.reidentified, result.failed) == (
        "parsed-claims-come-back-named",
        1,
        0,
    )
    assert orjson.loads(result.payload) == {
        "claimant": {"name": "Jane Doe"},
        "copy": token,
        "total": 2450,
    }


def test_replies_without_a_rule_pass_unchanged(claims_engine: Engine) -> None:
    """A reply for a subject no reply rule covers is passed as it is, tokens intact."""
    reply = b'{"claimant":{"name":"tok:v1:abcd"}}'
    result = claims_engine.evaluate_reply("claims.triage", reply)
    assert (result.rule, result.payload, result.reidentified) == (None, reply, 0)


def test_forged_or_foreign_tokens_are_counted_not_trusted(claims_engine: Engine) -> None:
    """A token the keys did not make stays as it is and is counted as failed."""
    result = claims_engine.evaluate_reply(
        "docs.parse", b'{"claimant":{"name":"tok:v1:abcdef0123"}}'
    )
    assert (result.reidentified, result.failed) == (0, 1)
    result = claims_engine.evaluate_reply("docs.parse", b'{"claimant":{"name":"tok:v9:abcdef"}}')
    assert (result.reidentified, result.failed) == (0, 1)


def test_old_key_versions_still_reidentify_after_rotation(claims: LoadedPolicy) -> None:
    """After a rotation new tokens use the new version; old tokens still come back."""
    keys = MemoryKeyRing.ephemeral(claims.policy.spec.keys)
    before = engine_for(claims, keys)
    old = decide(before, "docs.parse", {"claimant": {"name": "Jane Doe"}})
    keys.add(KeyVersion("pseudonyms", 2, bytes(64)))
    after = engine_for(claims, keys)
    new = decide(after, "docs.parse", {"claimant": {"name": "Jane Doe"}})
    assert old.payload is not None
    assert new.payload is not None
    old_token = orjson.loads(old.payload)["claimant"]["name"]
    new_token = orjson.loads(new.payload)["claimant"]["name"]
    assert old_token.startswith("tok:v1:")
    assert new_token.startswith("tok:v2:")
    for token in (old_token, new_token):
        reply = after.evaluate_reply("docs.parse", orjson.dumps({"claimant": {"name": token}}))
        assert orjson.loads(reply.payload)["claimant"]["name"] == "Jane Doe"


def test_reply_payload_must_be_valid(claims_engine: Engine) -> None:
    """Replies go through the same payload checks as requests."""
    with pytest.raises(PayloadError):
        claims_engine.evaluate_reply("docs.parse", b"\xff")


def test_inbound_requests_need_a_rule_and_reidentify_what_it_names(claims_engine: Engine) -> None:
    """Cloud-initiated requests reach only the local subjects an inbound rule allows."""
    sent = decide(claims_engine, "docs.parse", {"claimant": {"name": "Jane Doe"}, "notes": "n"})
    assert sent.payload is not None
    token = orjson.loads(sent.payload)["claimant"]["name"]
    request = orjson.dumps({"claimant": {"name": token}, "status": "approved"})
    result = claims_engine.evaluate_inbound("claims.updates.c-1", request)
    assert result is not None
    assert (result.rule, result.reidentified, result.failed) == (
        "cloud-may-post-claim-updates",
        1,
        0,
    )
    assert orjson.loads(result.payload)["claimant"]["name"] == "Jane Doe"
    for subject in ("claims.fraud.check", "rb.out.docs.parse", "_INBOX.x", "$JS.API.INFO", "a..b"):
        assert claims_engine.evaluate_inbound(subject, request) is None, subject


def test_no_inbound_rules_means_no_cloud_initiated_requests(ordered: Engine) -> None:
    assert ordered.evaluate_inbound("claims.updates.c-1", b"{}") is None


def test_inbound_payload_must_be_valid(claims_engine: Engine) -> None:
    with pytest.raises(PayloadError):
        claims_engine.evaluate_inbound("claims.updates.c-1", b"[1]")
