"""Turning payload bytes into a document the engine may transform, or a precise refusal.

A payload must be a UTF-8 JSON object, within the size and nesting limits, with no key twice in
one object (the classic way to make two parsers see two different messages). Everything here
runs in time and memory bounded by the payload size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.errors import RbridgeError
from bridge.policy.model import Limits


class PayloadError(RbridgeError, ValueError):
    """Why a payload is refused; ``code`` goes into the decision's reason (``payload:<code>``)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    max_bytes: int = 1 << 20
    max_depth: int = 64

    @classmethod
    def of(cls, limits: Limits) -> PayloadLimits:
        return cls(limits.max_payload_bytes, limits.max_depth)


def parse_payload(raw: bytes, limits: PayloadLimits) -> dict[str, Any]:
    """Parse ``raw`` into a fresh dict, or raise :class:`PayloadError`."""
    if len(raw) > limits.max_bytes:
        raise PayloadError(
            "too-large",
            f"payload of {len(raw)} bytes exceeds the limit of {limits.max_bytes} bytes",
        )
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise PayloadError(
                "not-utf8", f"payload is not valid UTF-8 (byte {bad.start})"
            ) from None
        if "surrogate" in str(error):
            # An escaped lone surrogate ("\ud800") is valid JSON text but no Unicode character.
            raise PayloadError(
                "not-utf8",
                f"payload escapes a lone surrogate, which is not Unicode ({_position(error)})",
            ) from None
        if "depth" in str(error) or "recursion" in str(error):
            raise PayloadError(
                "too-deep", f"payload nests deeper than {limits.max_depth} levels"
            ) from None
        raise PayloadError("not-json", f"payload is not valid JSON ({_position(error)})") from None
    if type(document) is not dict:
        raise PayloadError("not-object", f"payload is a JSON {_kind(document)}, not an object")
    # More brackets than the limit is necessary for too deep a nesting, and cheap to count.
    if raw.count(b"{") + raw.count(b"[") > limits.max_depth and _depth(document) > limits.max_depth:
        raise PayloadError("too-deep", f"payload nests deeper than {limits.max_depth} levels")
    # Canonical input (what the SDKs send) re-serialises to itself; such input can hold neither
    # a duplicate key (the parsed dict would have lost it) nor an integer orjson turned into a
    # float (it would come back in another form). Anything else is re-checked.
    if orjson.dumps(document) != raw:
        _recheck(raw)
    return document


def _exact_integer(text: str) -> int:
    """An integer literal that orjson keeps exact (64 bits), or a refusal."""
    try:
        value = int(text)
    except ValueError:  # more digits than Python converts
        value = None
    if value is None or not _INT_MIN <= value <= _UINT_MAX:
        raise PayloadError(
            "number-out-of-range",
            f"payload holds an integer of {len(text.lstrip('-'))} digits; integers beyond 64 bits "
            "would lose digits, so send them as strings",
        )
    return value


_INT_MIN = -(1 << 63)
_UINT_MAX = (1 << 64) - 1


def _recheck(raw: bytes) -> None:
    """Refuse what orjson accepted but would change: duplicate keys, integers beyond 64 bits."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(items)
        if len(result) != len(items):
            seen: set[str] = set()
            for name, _ in items:
                if name in seen:
                    raise PayloadError(
                        "duplicate-key", f"payload has the key {_name(name)} twice in one object"
                    )
                seen.add(name)
        return result

    json.loads(raw, object_pairs_hook=pairs, parse_int=_exact_integer)


def _name(key: str) -> str:
    # Keys are usually field names; bound them so a key cannot smuggle data into a log line.
    return repr(key) if len(key) <= 40 and key.isidentifier() else f"of {len(key)} characters"


def _depth(document: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.values() if type(node) is dict else node
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return deepest


def _kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _position(error: orjson.JSONDecodeError) -> str:
    return f"line {error.lineno} column {error.colno}"
