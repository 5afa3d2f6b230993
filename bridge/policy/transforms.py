"""Field transforms: drop, mask, hash, tokenize, and the reverse of tokenize (re-identify).

Transforms mutate a document that the engine parsed for this message alone (the caller's bytes
are never touched), and report how many places they changed, never what was there.

Hashes and tokens are written in a letters-only alphabet (hex with 0-9 replaced by g-p): no
digits, '@' or '.', so no detector can mistake a token for a phone number or a card, and the
leak guard never denies a message because of the pseudonyms the bridge itself produced.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag

from bridge.policy.detectors import DetectorSet
from bridge.policy.keyring import CryptoKey
from bridge.policy.paths import FieldPath, Location

MASKED = "[masked]"
HASH_PREFIX = "hmac:"
TOKEN_PREFIX = "tok:"
_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")
_FROM_LETTERS = str.maketrans("ghijklmnop", "0123456789")
_LETTERS = frozenset("abcdefghijklmnop")


def _letters(data: bytes) -> str:
    return data.hex().translate(_TO_LETTERS)


def _from_letters(text: str) -> bytes:
    if not text or len(text) % 2 or not _LETTERS.issuperset(text):
        raise ValueError("not a letters-encoded value")
    return bytes.fromhex(text.translate(_FROM_LETTERS))


def _token_context(key_name: str) -> list[bytes]:
    return [b"rbridge/v1 token " + key_name.encode()]


def hash_value(key: CryptoKey, value: Any) -> str:
    """HMAC-SHA-256 of the value's JSON form: ``hmac:v<version>:<64 letters>``."""
    digest = hmac.digest(key.hmac_key, orjson.dumps(value), "sha256")
    return f"{HASH_PREFIX}v{key.version}:{_letters(digest)}"


def tokenize_value(key: CryptoKey, value: Any) -> str:
    """Deterministic AES-SIV encryption of the value's JSON form: ``tok:v<version>:<letters>``."""
    sealed = key.siv.encrypt(orjson.dumps(value), _token_context(key.name))
    return f"{TOKEN_PREFIX}v{key.version}:{_letters(sealed)}"


def token_version(token: str) -> int | None:
    """The key version a token was made with, or None if ``token`` is not shaped like one."""
    if not token.startswith(TOKEN_PREFIX + "v"):
        return None
    head, _, _ = token[len(TOKEN_PREFIX) + 1 :].partition(":")
    return int(head) if head.isdigit() and len(head) <= 6 else None


def reidentify_value(token: str, key: CryptoKey) -> Any:
    """The original value behind ``token``; raises ValueError if this key did not make it."""
    _, _, body = token[len(TOKEN_PREFIX) :].partition(":")
    try:
        plain = key.siv.decrypt(_from_letters(body), _token_context(key.name))
    except InvalidTag:
        raise ValueError("the token was not made with this key") from None
    return orjson.loads(plain)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one transform did to one message: the policy's path, the action, how many places."""

    path: str
    action: str
    count: int


@dataclass(frozen=True, slots=True)
class FieldTransform:
    """One compiled transform of a rule."""

    path: FieldPath
    action: str
    key: CryptoKey | None = None
    detectors: frozenset[str] | None = None
    scanner: DetectorSet | None = None

    def apply(self, document: Any) -> int:
        """Transform every place the path names in ``document``; return how many changed."""
        places = self.path.locate(document)
        if not places:
            return 0
        if self.action == "drop":
            return _drop(places)
        change = self._change()
        changed = 0
        for container, slot in places:
            if _is_live(container, slot):
                before = container[slot]
                after = change(before)
                if after is not before:
                    container[slot] = after
                    changed += 1
        return changed

    def _change(self) -> Callable[[Any], Any]:
        key = self.key
        if self.action == "hash":
            assert key is not None
            return lambda value: hash_value(key, value)
        if self.action == "tokenize":
            assert key is not None
            return lambda value: tokenize_value(key, value)
        if self.detectors is None:
            return lambda _value: MASKED
        scanner, only = self.scanner, self.detectors
        assert scanner is not None
        return lambda value: mask_found(value, scanner, only)


def _is_live(container: Any, slot: Any) -> bool:
    if type(container) is dict:
        return slot in container
    return type(container) is list and slot < len(container)


def _drop(places: list[Location]) -> int:
    dropped = 0
    # Delete list elements from the highest index down so earlier indexes stay valid.
    for container, slot in sorted(
        places, key=lambda place: place[1] if type(place[1]) is int else 0, reverse=True
    ):
        if _is_live(container, slot):
            del container[slot]
            dropped += 1
    return dropped


def mask_found(value: Any, scanner: DetectorSet, only: frozenset[str]) -> Any:
    """``value`` with what the detectors in ``only`` find replaced by ``[<detector>]``.

    Strings are scanned; numbers are scanned in their decimal form (a phone number stored as an
    integer is still a phone number); objects and arrays are masked member by member.
    Returns the very same object when nothing was found.
    """
    kind = type(value)
    if kind is str:
        spans = scanner.spans(value, only)
        if not spans:
            return value
        parts: list[str] = []
        last = 0
        for span in spans:
            parts.append(value[last : span.start])
            parts.append(f"[{span.detector}]")
            last = span.end
        parts.append(value[last:])
        return "".join(parts)
    if kind is int or kind is float:
        masked = mask_found(str(value), scanner, only)
        return value if type(masked) is str and masked == str(value) else masked
    if kind is dict:
        changed = {name: mask_found(item, scanner, only) for name, item in value.items()}
        return value if all(changed[name] is item for name, item in value.items()) else changed
    if kind is list:
        items = [mask_found(item, scanner, only) for item in value]
        return value if all(new is old for new, old in zip(items, value, strict=True)) else items
    return value
