"""What a reader would see in a text: the normalised view that detection runs on.

Detectors are ASCII patterns. Someone who wants a value past them writes it in a form a person
still reads but a pattern does not: fullwidth or Arabic-Indic digits, an en dash for a hyphen, a
zero-width space inside a number, ``%40`` for ``@``, ``\\u0035`` for ``5``. :class:`TextView`
undoes those forms in one left-to-right pass:

- every character goes through NFKC (fullwidth, mathematical and circled forms become ASCII);
- format characters (zero-width space and joiners, word joiner, soft hyphen, BOM, bidi marks)
  are removed;
- every Unicode decimal digit becomes its ASCII digit, every dash ``-`` and every space ``' '``;
- ``%XX`` (URL encoding), ``\\uXXXX`` / ``\\xXX`` (JSON, JavaScript and Python escapes) and
  HTML character references (``&#53;``, ``&#x35;``, ``&commat;``…) become the character they
  stand for.

The view keeps a map back to the original, so a mask replaces exactly the original characters of
a value, invisible characters inside it included. Text that needs none of this is its own view:
plain ASCII with no ``%``, ``\\`` or ``&`` (the common case) at the cost of three ``in`` checks,
and text whose other characters all read as themselves (accented letters, Greek, Cyrillic, CJK)
at the cost of one RE2 scan.
"""

from __future__ import annotations

import html
import re
import sys
import unicodedata
from bisect import bisect_right
from functools import lru_cache

import re2
from re2 import _re2

_SPACE = " "
_DASH = "-"
_CACHE_LIMIT = 1 << 16
_MARKS = "%\\&"
# Encoded characters: URL, JSON/JavaScript/Python escapes, HTML character references.
_ENCODINGS = (
    r"%[0-9A-Fa-f]{2}"
    r"|\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}"
    r"|&#[0-9]{1,7};|&#[xX][0-9A-Fa-f]{1,6};|&[A-Za-z]{2,8};"
)


@lru_cache(maxsize=4096)
def _character(char: str) -> str | None:
    """What one non-ASCII character reads as, or None when it reads as itself."""
    category = unicodedata.category(char)
    if category == "Cf":
        return ""
    digit = unicodedata.decimal(char, None)
    if digit is not None:
        return chr(48 + digit)
    if category in ("Zs", "Zl", "Zp"):
        return _SPACE
    if category == "Pd" or char == "\u2212":  # dashes, and the minus sign
        return _DASH
    folded = unicodedata.normalize("NFKC", char)
    if folded == char:
        return None
    # NFKC may give a dash, a space or a digit outside ASCII again; read those the same way.
    return _fold(folded)


def _as_read(char: str) -> str:
    read = _character(char)
    return char if read is None else read


def _fold(text: str) -> str:
    return "".join(char if char.isascii() else _as_read(char) for char in text)


class _Reading(dict[int, str]):
    """A ``str.translate`` table filled on demand: each character as it reads."""

    def __missing__(self, code: int) -> str:
        read = _as_read(chr(code))
        if len(self) < _CACHE_LIMIT:
            self[code] = read
        return read


_READING = _Reading()


class _Suspects:
    """The characters that do not read as themselves, as patterns (built on first use).

    Every character of the Basic Multilingual Plane is classified once (about 60 ms); all
    characters beyond it (mathematical digits, emoji) count as suspects.
    """

    def __init__(self) -> None:
        self._runs: re.Pattern[str] | None = None
        self._any: _re2.RE2 | None = None
        #: Suspects that read as more or fewer than one character (format characters, ligatures).
        self.uneven: frozenset[str] = frozenset()

    def _build(self) -> None:
        ranges: list[tuple[int, int]] = []
        uneven: set[str] = set()
        character = _character.__wrapped__  # the cache would only be thrashed here
        for code in range(0x80, 0x10000):
            if 0xD800 <= code <= 0xDFFF:
                continue
            read = character(chr(code))
            if read is None:
                continue
            if len(read) != 1:
                uneven.add(chr(code))
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
        ranges.append((0x10000, sys.maxunicode))
        python = "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges)
        self._runs = re.compile(f"{_ENCODINGS}|[{python}]+")
        classes = "".join(f"\\x{{{low:x}}}-\\x{{{high:x}}}" for low, high in ranges)
        options = re2.Options()
        options.log_errors = False
        options.max_mem = 8 << 20
        self._any = _re2.RE2(f"[{classes}%\\\\&]".encode(), options)
        self.uneven = frozenset(uneven)

    def warm(self) -> None:
        """Build the patterns now (policy load time) rather than on the first unusual text."""
        if self._runs is None:
            self._build()

    def present(self, data: bytes) -> bool:
        """Whether UTF-8 ``data`` holds a suspect character or an encoding mark."""
        if self._any is None:
            self._build()
        assert self._any is not None
        return bool(self._any.Match(re2._Anchor.UNANCHORED, data, 0, len(data))[0][0] >= 0)

    def runs(self) -> re.Pattern[str]:
        """Encoded characters, and runs of suspect characters, left to right."""
        if self._runs is None:
            self._build()
        assert self._runs is not None
        return self._runs


_SUSPECTS = _Suspects()


def _decode(token: str) -> str | None:
    """What an encoded character stands for; None when it is no encoding after all."""
    first = token[0]
    try:
        if first == "%":
            code = int(token[1:], 16)
            # One byte of a UTF-8 sequence alone says nothing; ASCII is what evasion uses.
            return chr(code) if code < 0x80 else None
        if first == "\\":
            code = int(token[2:], 16)
        elif token.startswith(("&#x", "&#X")):
            code = int(token[3:-1], 16)
        elif token.startswith("&#"):
            code = int(token[2:-1])
        else:
            named = html.unescape(token)
            return None if named == token else _fold(named)
    except ValueError:
        return None
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return _fold(chr(code))


def needs_view(text: str) -> bool:
    """False when ``text`` is certainly its own view (ASCII, nothing encoded)."""
    return not text.isascii() or "%" in text or "\\" in text or "&" in text


class TextView:
    """A normalised view of a text, and the way back to the original's offsets."""

    __slots__ = ("_changes", "_norm_starts", "original", "text")

    def __init__(self, original: str, text: str, changes: list[tuple[int, int, int, int]]) -> None:
        self.original = original
        self.text = text
        # (view start, view length, original start, original length) of each replacement whose
        # length differs from the original's; replacements of one for one need no entry.
        self._changes = changes
        self._norm_starts = [change[0] for change in changes]

    @classmethod
    def of(cls, text: str) -> TextView:
        """The view of ``text`` (the text itself when it needs no normalising)."""
        if not needs_view(text) or not _SUSPECTS.present(text.encode("utf-8", "surrogatepass")):
            return cls(text, text, [])
        pieces: list[str] = []
        changes: list[tuple[int, int, int, int]] = []
        last = 0
        length = 0  # of the view so far
        for match in _SUSPECTS.runs().finditer(text):
            token = match.group()
            start, end = match.span()
            if token[0] in _MARKS:
                replacement = _decode(token)
                if replacement is None:
                    continue
                if len(replacement) != len(token):
                    changes.append((length + start - last, len(replacement), start, end - start))
            else:
                if _SUSPECTS.uneven.isdisjoint(token) and max(token) < "\U00010000":
                    replacement = token.translate(_READING)  # one for one: offsets stay
                else:
                    replacement = _read_unevenly(token, start, length + start - last, changes)
            pieces.append(text[last:start])
            pieces.append(replacement)
            length += start - last + len(replacement)
            last = end
        if not pieces:
            return cls(text, text, [])
        pieces.append(text[last:])
        return cls(text, "".join(pieces), changes)

    @property
    def changed(self) -> bool:
        return self.text is not self.original

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The original characters behind ``view[start:end]`` (a non-empty span)."""
        if not self._changes:
            return start, end
        return self._position(start, False), self._position(end - 1, True)

    def _position(self, at: int, after: bool) -> int:
        index = bisect_right(self._norm_starts, at) - 1
        if index < 0:
            return at + 1 if after else at
        view_start, view_length, original_start, original_length = self._changes[index]
        if at < view_start + view_length:
            # Inside a replacement: it stands for all of its original characters.
            return original_start + original_length if after else original_start
        offset = original_start + original_length + (at - view_start - view_length)
        return offset + 1 if after else offset


def _read_unevenly(
    run: str, start: int, position: int, changes: list[tuple[int, int, int, int]]
) -> str:
    """Read ``run`` (at ``start`` in the original, ``position`` in the view) character by
    character, recording each one that reads as more or fewer than one; returns its reading."""
    parts: list[str] = []
    for offset, char in enumerate(run):
        read = _READING[ord(char)]
        if len(read) != 1:
            changes.append((position, len(read), start + offset, 1))
        parts.append(read)
        position += len(read)
    return "".join(parts)


def reading(text: str, rounds: int = 3) -> str:
    """The view of ``text`` decoded again until nothing changes (at most ``rounds`` times).

    The leak guard reads the serialised output this way: JSON inside a string carries its escapes
    one level down (``\\\\u0035``), and each round removes one level. Linear in the text per round.
    """
    for _ in range(rounds):
        view = TextView.of(text)
        if not view.changed:
            break
        text = view.text
    return text


def warm() -> None:
    """Prepare normalisation ahead of the first message (about half a second, once)."""
    _SUSPECTS.warm()


__all__ = ["TextView", "needs_view", "reading", "warm"]
