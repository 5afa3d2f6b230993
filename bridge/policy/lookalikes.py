"""Look-alikes: harmless values that are shaped like sensitive ones, read as one token.

A labelled product code (``ISBN 978-0-306-40615-7``, ``EAN 4006381333931``), a date with or
without a time (``08.07.1997 15:20``), and a UUID are full of digit runs that the detectors'
patterns find and their checks then refuse (a 13-digit EAN is no 11-digit tax id, a date is no
phone number). Every refusal makes the scan read the rest of the text detector by detector, in
case the refused candidate hid a value of another class. These patterns let the combined scan
recognise such a token whole, checked by its own rule (check digit, calendar), and move past it.

A look-alike only ever decides a candidate that no detector confirms: it is ranked after every
detector, and where a detector's pattern matches the same text whole, that detector is asked
first. What a look-alike covers is limited to its own shape, bounded by non-digits on both
sides, so it cannot reach into a value written next to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

# Before the token: not a letter or digit, nor a "+" ("+15.12-2003" may be a phone number).
_START = r"(?:^|[^0-9A-Za-z+])"
# After the token: the end, or a character that neither continues it nor joins it to a number
# after it (up to three separators then a digit would: "12.05.1990. 1234 5678 901" may hold a
# card that starts with "1990", as card digits are grouped by up to three separators).
_SEPARATOR = r"[ \t\r\n\-./_:]"
_END = rf"(?:$|[^0-9A-Za-z \t\r\n\-./_:]|{_SEPARATOR}{{1,3}}(?:$|[^0-9 \t\r\n\-./_:])|{_SEPARATOR}{{4}})"


class Lookalike(NamedTuple):
    name: str
    pattern: str
    """RE2: the token, the character before it, and what may follow it (``_END``)."""
    token: Callable[[bytes], int]
    """Where the token ends in what the pattern matched, or -1 when it fails its rule (each
    reads its token from the start of the match, so none takes another's for its own)."""

    def end(self, data: bytes, start: int, stop: int) -> int:
        """The end of the harmless token read at ``data[start:stop]``, or -1: not one (it
        fails its rule, or an e-mail address runs on from it: "...-7@example.com")."""
        length = self.token(data[start:stop])
        if length < 0:
            return -1
        end = start + length
        return -1 if _EMAIL_TAIL.match(data, end) is not None else end


# An e-mail address running on: "@" within the 64 characters a local part may have, or a run
# longer than that (undecided: not read whole). Bounded, so a text of look-alikes joined by
# such characters costs linear time, not a scan to its end after each one.
_EMAIL_TAIL = re.compile(rb"[A-Za-z0-9._%+\-]{0,64}@|[A-Za-z0-9._%+\-]{65}")


def gs1_valid(digits: bytes) -> bool:
    """GS1 check digit (EAN-8, UPC-A, EAN-13, GTIN-14, ISBN-13)."""
    total = 0
    for position, char in enumerate(reversed(digits[:-1])):
        total += (char - 48) * (3 if position % 2 == 0 else 1)
    return (10 - total % 10) % 10 == digits[-1] - 48


def isbn10_valid(code: bytes) -> bool:
    """ISBN-10: nine digits and a check character (X for 10), weighted sum mod 11."""
    total = sum((char - 48) * (10 - position) for position, char in enumerate(code[:9]))
    check = 10 if code[9:10] in (b"X", b"x") else code[9] - 48
    return (total + check) % 11 == 0


_LABEL = r"(?:ean(?:-?(?:8|13|14))?|gtin(?:-?(?:8|12|13|14))?|upc(?:-?a)?|isbn(?:-?1[03])?)"
_CODE = re.compile(rb"(?i)" + _LABEL.encode() + rb"[^0-9A-Za-z]{1,4}([0-9][0-9 \-]*[0-9Xx])")


def _product_code(text: bytes) -> int:
    """A code after its label with the right number of digits and a valid check digit."""
    found = _CODE.match(text)
    if found is None:
        return -1
    code = found.group(1).replace(b"-", b"").replace(b" ", b"")
    if len(code) == 10 and code[:9].isdigit():
        valid = isbn10_valid(code)
    else:
        valid = code.isdigit() and len(code) in (8, 12, 13, 14) and gs1_valid(code)
    return found.end(1) if valid else -1


_DATE = re.compile(
    rb"(\d{1,4})[./\-](\d{1,2})[./\-](\d{2,4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?"
)


def _after_start(text: bytes) -> int:
    """Where the token starts in what its pattern matched: past the character before it."""
    return 0 if text[:1].isalnum() else 1


def _date(text: bytes) -> int:
    """A calendar date (day and month in either order, or ISO), and a clock time if any."""
    found = _DATE.match(text, _after_start(text))
    if found is None:
        return -1
    first, second, third, hours, minutes, seconds = found.groups()
    if len(first) == 4:
        month, day = int(second), int(third)
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return -1
    else:
        low, high = sorted((int(first), int(second)))  # 08.07.1997 or 06/15/2028
        if not (1 <= low <= 12 and 1 <= high <= 31 and len(third) == 4):
            return -1
    if hours is not None and not (int(hours) <= 23 and int(minutes) <= 59):
        return -1
    return found.end() if seconds is None or int(seconds) <= 59 else -1


_UUID = re.compile(rb"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def _uuid(text: bytes) -> int:
    found = _UUID.match(text, _after_start(text))
    return found.end() if found is not None else -1


LOOKALIKES: tuple[Lookalike, ...] = (
    Lookalike(
        "product code",
        rf"(?i:\b{_LABEL})[^0-9A-Za-z]{{1,4}}(?:\d{{8}}|\d{{9}}[0-9Xx]|\d{{12,14}}"
        r"|97[89](?:[ \-]\d{1,7}){3}[ \-]\d|\d{1,5}(?:[ \-]\d{1,7}){2}[ \-][0-9Xx])" + _END,
        _product_code,
    ),
    Lookalike(
        "date",
        _START + r"(?:\d{1,2}[./\-]\d{1,2}[./\-](?:19|20)\d{2}|(?:19|20)\d{2}-\d{2}-\d{2})"
        r"(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?" + _END,
        _date,
    ),
    Lookalike(
        "uuid",
        _START
        + r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
        + _END,
        _uuid,
    ),
)
