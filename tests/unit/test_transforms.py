"""Transforms: drop, mask, hash, tokenize and re-identify, on copies, deterministically."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bridge.policy.detectors import BUILTIN_DETECTORS, DetectorSet
from bridge.policy.keyring import CryptoKey, KeyVersion, MemoryKeyRing
from bridge.policy.paths import FieldPath
from bridge.policy.transforms import (
    MASKED,
    FieldTransform,
    hash_value,
    reidentify_value,
    token_version,
    tokenize_value,
)

SCANNER = DetectorSet.of(BUILTIN_DETECTORS.values())
KEY = CryptoKey.derive(KeyVersion("pseudonyms", 1, bytes(range(64))))
OTHER = CryptoKey.derive(KeyVersion("pseudonyms", 2, bytes(range(1, 65))))


def apply(action: str, path: str, document: Any, **options: Any) -> int:
    transform = FieldTransform(FieldPath.parse(path), action, scanner=SCANNER, **options)
    return transform.apply(document)


def test_drop_removes_fields_and_array_elements() -> None:
    """Dropping a member removes it; dropping elements keeps the others in order."""
    document = {"a": {"ssn": "x", "keep": 1}, "items": [1, 2, 3, 4]}
    assert apply("drop", "$.a.ssn", document) == 1
    assert apply("drop", "$.items[*]", document) == 4
    assert document == {"a": {"keep": 1}, "items": []}


def test_drop_by_descent_removes_every_occurrence() -> None:
    """$..ssn drops the field wherever it is, including in arrays of objects."""
    document = {"ssn": 1, "people": [{"ssn": 2, "n": 1}, {"n": 2}], "x": {"y": {"ssn": 3}}}
    assert apply("drop", "$..ssn", document) == 3
    assert document == {"people": [{"n": 1}, {"n": 2}], "x": {"y": {}}}


def test_missing_paths_change_nothing() -> None:
    """A transform of an absent field is a no-op with count 0."""
    document = {"a": 1}
    assert apply("drop", "$.b", document) == 0
    assert apply("mask", "$.b.c", document) == 0
    assert document == {"a": 1}


def test_mask_whole_field_replaces_any_value() -> None:
    """Masking without detectors replaces the value, whatever its type."""
    document = {"s": "secret", "n": 123, "o": {"deep": "x"}}
    assert apply("mask", "$.*", document) == 3
    assert document == {"s": MASKED, "n": MASKED, "o": MASKED}


def test_mask_with_detectors_replaces_only_what_they_find() -> None:
    """Detected spans become [detector]; the rest of the text stays, including other classes."""
    document = {"notes": "mail jane@example.com or call +44 20 7946 0958 on 2026-10-03"}
    assert apply("mask", "$.notes", document, detectors=("email",)) == 1
    assert document["notes"] == "mail [email] or call +44 20 7946 0958 on 2026-10-03"


def test_mask_with_detectors_reaches_into_containers_and_numbers() -> None:
    """Strings inside objects and arrays are scanned, and so are numbers in decimal form."""
    document = {"contact": {"emails": ["a@example.com", "none"], "card": 4111111111111111, "n": 7}}
    assert apply("mask", "$.contact", document, detectors=("email", "credit_card")) == 1
    assert document == {"contact": {"emails": ["[email]", "none"], "card": "[credit_card]", "n": 7}}


def test_mask_without_hits_reports_no_change() -> None:
    """Nothing found means the field is untouched and not counted."""
    document = {"notes": "nothing to see"}
    assert apply("mask", "$.notes", document, detectors=("email",)) == 0


def test_hash_is_keyed_deterministic_and_prefixed() -> None:
    """Same key and value give the same hash; another key gives another; the prefix shows it."""
    first, again = hash_value(KEY, "PN-1"), hash_value(KEY, "PN-1")
    assert first == again
    assert first != hash_value(OTHER, "PN-1")
    assert first != hash_value(KEY, "PN-2")
    assert re.fullmatch(r"hmac:v1:[a-p]{64}", first)


def test_hash_distinguishes_types() -> None:
    """The string "1" and the number 1 do not collide: the JSON form is hashed."""
    assert hash_value(KEY, "1") != hash_value(KEY, 1)


def test_tokens_are_deterministic_reversible_and_letters_only() -> None:
    """Same value, same token; the key turns it back into the exact value and type."""
    for value in ("Jane Doe", 42, 1.5, True, None, {"a": [1, "b"]}, "ü€𝄞"):
        token = tokenize_value(KEY, value)
        assert token == tokenize_value(KEY, value)
        assert re.fullmatch(r"tok:v1:[a-p]+", token)
        assert reidentify_value(token, KEY) == value


def test_a_token_cannot_be_reversed_with_another_key() -> None:
    """AES-SIV authenticates: the wrong key fails rather than returning garbage."""
    token = tokenize_value(KEY, "Jane Doe")
    with pytest.raises(ValueError, match="not made with this key"):
        reidentify_value(token, OTHER)
    other_name = CryptoKey.derive(KeyVersion("other", 1, bytes(range(64))))
    with pytest.raises(ValueError, match="not made with this key"):
        reidentify_value(token, other_name)


@pytest.mark.parametrize("token", ["tok:v1:", "tok:v1:xyz", "tok:v1:abc", "tok:v1:" + "a" * 40])
def test_malformed_tokens_fail_cleanly(token: str) -> None:
    """Garbage after the prefix is a ValueError, never a crash or a wrong value."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message differs by what is wrong
        reidentify_value(token, KEY)


def test_token_version_reads_the_prefix() -> None:
    """The version in the prefix picks the key version for re-identification."""
    assert token_version("tok:v12:abcd") == 12
    assert token_version("tok:vx:abcd") is None
    assert token_version("hmac:v1:abcd") is None
    assert token_version("Jane") is None


def test_hash_and_tokenize_apply_to_every_place() -> None:
    """Transforms change values in place in the engine's copy and count places."""
    document = {"people": [{"name": "A"}, {"name": "B"}]}
    assert apply("tokenize", "$.people[*].name", document, key=KEY) == 2
    assert all(p["name"].startswith("tok:v1:") for p in document["people"])


def test_derived_keys_differ_per_purpose() -> None:
    """One key name used for hash and tokenize does not reuse material across algorithms."""
    assert KEY.hmac_key != bytes(range(64))[:32]
    ring = MemoryKeyRing.ephemeral(["a"])
    assert ring.current("a").version == 1


def test_mac_is_standard_hmac_sha256() -> None:
    """The precomputed-pad MAC equals the standard library's HMAC-SHA-256 (RFC 2104)."""
    import hmac

    for data in (b"", b"PN-1", b"x" * 200):
        assert KEY.mac(data) == hmac.digest(KEY.hmac_key, data, "sha256")
