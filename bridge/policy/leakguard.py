"""The leak guard: what a reader of a message's output would find, checked against a permit.

After the transforms, every string of the output is read with every detector; a class that the
rule does not ``permit`` turns the decision into a deny. One module for the edge's engine and
the gateway's own guard, so both give the same answer on the same bytes.

The output is read as a person would read it, not as the bytes lie: JSON escapes are decoded
(``\\n`` no longer glues text to a number, ``\\u0035`` is a ``5``), and then the normalised view of
:mod:`bridge.policy.textview` undoes Unicode look-alikes, invisible characters, URL encoding and
escapes one level down (JSON text inside a string), up to three levels deep. Output that is
plain ASCII with none of ``\\``, ``%`` or ``&`` (most messages) is scanned as it is.
"""

from __future__ import annotations

import re

from bridge.policy.detectors import DetectorSet
from bridge.policy.textview import reading, warm

_JSON_ESCAPE = re.compile(r'\\(?:u[0-9a-fA-F]{4}|["\\/bfnrt])')
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": " ", "f": " ", "n": "\n", "r": "\n", "t": " "}


def _unescape(match: re.Match[str]) -> str:
    escape = match.group()
    if escape[1] == "u":
        code = int(escape[2:], 16)
        return " " if 0xD800 <= code <= 0xDFFF else chr(code)
    return _SIMPLE[escape[1]]


def read_output(output: bytes) -> bytes:
    """The serialised output as the detectors should read it (see the module's docstring)."""
    if output.isascii() and b"\\" not in output and b"%" not in output and b"&" not in output:
        return output
    text = output.decode("utf-8", "replace")
    if "\\" in text:
        text = _JSON_ESCAPE.sub(_unescape, text)
    return reading(text).encode("utf-8", "replace")


class LeakGuard:
    """Finds the first detector class in an output that a permit does not allow."""

    __slots__ = ("scanner",)

    def __init__(self, scanner: DetectorSet) -> None:
        self.scanner = scanner
        warm()  # the first unusual text must not pay for preparing normalisation

    def first_unpermitted(self, output: bytes, permit: frozenset[str]) -> str | None:
        """The first class found in ``output`` (serialised JSON) that ``permit`` does not allow."""
        for found in self.scanner.classes_in(read_output(output), stop_unless=permit):
            if found not in permit:
                return found
        return None
