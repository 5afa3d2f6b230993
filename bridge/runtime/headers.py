"""Headers crossing the bridge: checked on the way in, and never passed through as they are."""

from __future__ import annotations

from collections.abc import Mapping

from bridge.contract import RESERVED_HEADER_PREFIXES
from bridge.natspublish import HEADER_NAME

_RESERVED = tuple(prefix.lower() for prefix in RESERVED_HEADER_PREFIXES)
MAX_HEADER_VALUE = 1024
MAX_HEADERS = 32
# Names seen to be tokens (they repeat from message to message); bounded, as agents choose them.
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_LIMIT = 4096


def header_problem(headers: Mapping[str, str]) -> str | None:
    """Why these headers are unacceptable (a name that is not an RFC 7230 token, which NATS
    clients will not publish, CR/LF/NUL in a value, oversize, too many), or None."""
    if len(headers) > MAX_HEADERS:
        return f"{len(headers)} headers exceed the limit of {MAX_HEADERS}"
    for name, value in headers.items():
        # This runs for every message on the hot path: a set lookup for a name seen before,
        # three substring scans (C loops) for a value.
        if name not in _GOOD_NAMES:
            if not HEADER_NAME.fullmatch(name):
                return "a header name contains a forbidden character (letters, digits and !#$%&'*+-.^_`|~ only)"
            if len(_GOOD_NAMES) < _GOOD_NAMES_LIMIT:
                _GOOD_NAMES.add(name)
        if "\r" in value or "\n" in value or "\x00" in value:
            return f"header {name[:40]!r} contains CR, LF or NUL"
        if len(value) > MAX_HEADER_VALUE:
            return f"header {name[:40]!r} is longer than {MAX_HEADER_VALUE} characters"
    return None


def carriable(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers that pass :func:`header_problem` one by one: what a copy of a message refused
    for its headers can still carry."""
    return {name: value for name, value in headers.items() if not header_problem({name: value})}


def passthrough(headers: Mapping[str, str]) -> dict[str, str]:
    """The application headers that may travel on: everything but Nats-* and Rb-* (set by us)."""
    return {
        name: value for name, value in headers.items() if not name.lower().startswith(_RESERVED)
    }
