"""Field transforms: drop, mask, hash, tokenize, and the reverse of tokenize (re-identify).

Transforms mutate a document that the engine parsed for this message alone (the caller's bytes
are never touched), and report how many places they changed, never what was there.

Hashes and tokens are written in a letters-only alphabet (hex with 0-9 replaced by g-p): no
digits, '@' or '.', so no detector can mistake a token for a phone number or a card, and the
leak guard never denies a message because of the pseudonyms the bridge itself produced.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from cryptography.exceptions import InvalidTag

from bridge.policy.detectors import DetectorSet
from bridge.policy.keyring import CryptoKey
from bridge.policy.paths import FieldPath, Location

MASKED = "[masked]"
HASH_PREFIX = "hmac:"
TOKEN_PREFIX = "tok:"
_TO_LETTERS = bytes.maketrans(b"0123456789", b"ghijklmnop")
_FROM_LETTERS = str.maketrans("ghijklmnop", "0123456789")
_LETTERS = frozenset("abcdefghijklmnop")


def _letters(data: bytes) -> str:
    return binascii.hexlify(data).translate(_TO_LETTERS).decode("ascii")


def _from_letters(text: str) -> bytes:
    if not text or len(text) % 2 or not _LETTERS.issuperset(text):
        raise ValueError("not a letters-encoded value")
    return bytes.fromhex(text.translate(_FROM_LETTERS))


def hash_value(key: CryptoKey, value: Any) -> str:
    """HMAC-SHA-256 of the value's JSON form: ``hmac:v<version>:<64 letters>``."""
    return f"{HASH_PREFIX}v{key.version}:{_letters(key.mac(orjson.dumps(value)))}"


def tokenize_value(key: CryptoKey, value: Any) -> str:
    """Deterministic AES-SIV encryption of the value's JSON form: ``tok:v<version>:<letters>``."""
    sealed = key.siv.encrypt(orjson.dumps(value), key.token_context)
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
        plain = key.siv.decrypt(_from_letters(body), key.token_context)
    except InvalidTag:
        raise ValueError("the token was not made with this key") from None
    return orjson.loads(plain)


class Applied(NamedTuple):
    """What one transform did to one message: the policy's path, the action, how many places."""

    path: str
    action: str
    places: int


class FieldTransform:
    """One compiled transform of a rule; ``apply`` is on the per-message path, so it is lean."""

    __slots__ = ("_change", "_last", "_parents", "action", "detectors", "key", "path", "scanner")

    def __init__(
        self,
        path: FieldPath,
        action: str,
        key: CryptoKey | None = None,
        detectors: tuple[str, ...] | None = None,
        scanner: DetectorSet | None = None,
    ) -> None:
        self.path, self.action, self.key, self.detectors, self.scanner = (
            path,
            action,
            key,
            detectors,
            scanner,
        )
        last = path.steps[-1]
        # The member's name is context for a bare number ("ssn": 536228751).
        label = last.name if last.kind in ("key", "descend") else ""
        self._change = _change_for(action, key, detectors, scanner, label)
        names = tuple(step.name for step in path.steps) if path.is_simple else None
        self._parents = names[:-1] if names else None
        self._last = names[-1] if names else ""

    def __repr__(self) -> str:
        return f"FieldTransform({self.path.text!r}, {self.action!r})"

    def apply(self, document: Any) -> int:
        """Transform every place the path names in ``document``; return how many changed."""
        change = self._change
        parents = self._parents
        if parents is not None:
            # A plain member path names at most one place: walk to it directly.
            node = document
            for name in parents:
                node = node.get(name) if type(node) is dict else None
            last = self._last
            if type(node) is not dict or last not in node:
                return 0
            if change is None:
                del node[last]
                return 1
            before = node[last]
            after = change(before)
            if after is before:
                return 0
            node[last] = after
            return 1
        places = self.path.locate(document)
        if not places:
            return 0
        if change is None:
            return _drop(places)
        changed = 0
        for container, slot in places:
            if _is_live(container, slot):
                before = container[slot]
                after = change(before)
                if after is not before:
                    container[slot] = after
                    changed += 1
        return changed


def _change_for(
    action: str,
    key: CryptoKey | None,
    detectors: tuple[str, ...] | None,
    scanner: DetectorSet | None,
    label: str = "",
) -> Callable[[Any], Any] | None:
    if action == "drop":
        return None
    if action in ("hash", "tokenize"):
        if key is None:
            raise ValueError(f"action {action!r} needs a key")
        make = hash_value if action == "hash" else tokenize_value
        return lambda value: make(key, value)
    if action != "mask":
        raise ValueError(f"unknown action {action!r}")
    if detectors is None:
        return lambda _value: MASKED
    if scanner is None:
        raise ValueError("masking by detectors needs a scanner")
    return lambda value: mask_found(value, scanner, detectors, label)


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


def mask_found(value: Any, scanner: DetectorSet, only: tuple[str, ...], label: str = "") -> Any:
    """``value`` with what the detectors in ``only`` find replaced by ``[<detector>]``.

    Strings are scanned; numbers are scanned in their decimal form (a phone number stored as an
    integer is still a phone number); objects and arrays are masked member by member. A bare
    number, or a string of digits alone, is read after its member's name, so that
    ``"ssn": 536228751`` is recognised as the labelled value it is. Returns the very same object
    when nothing was found.
    """
    kind = type(value)
    if kind is str:
        if label and value[:1] in _NUMBER_START and _BARE_NUMBER.fullmatch(value):
            return _mask_labelled(value, value, scanner, only, label)
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
        return _mask_labelled(value, str(value), scanner, only, label)
    if kind is dict:
        changed = {name: mask_found(item, scanner, only, name) for name, item in value.items()}
        return value if all(changed[name] is item for name, item in value.items()) else changed
    if kind is list:
        items = [mask_found(item, scanner, only, label) for item in value]
        return value if all(new is old for new, old in zip(items, value, strict=True)) else items
    return value


_BARE_NUMBER = re.compile(r"\+?[0-9][0-9 ]{0,40}")
_NUMBER_START = frozenset("+0123456789")  # ("" is not in it)


def _mask_labelled(
    value: Any, text: str, scanner: DetectorSet, only: tuple[str, ...], label: str
) -> Any:
    """A bare number masked as a whole if, read after its label, a detector finds it."""
    prefix = f"{label[:64]}: " if label else ""
    reading = prefix + text
    for span in scanner.spans(reading, only):
        if span.end > len(prefix):
            return f"[{span.detector}]"
    return value
