"""Phone numbers: which candidates of the phone detector's RE2 scan are numbers.

A number written the way people write phone numbers (``+CC …``, ``00CC …``, ``(212) 555-0199``,
``030 1234 5678``, with an extension or not) is taken by its shape, which costs nothing more.
A bare run of ten or eleven digits is a phone number only when it is valid in the numbering
plan of one of :data:`REGIONS` (libphonenumber's metadata, through ``phonenumbers``) or follows
a word such as "tel" (a policy names its regions in ``spec.phone_regions``); dates, date-times and US ZIP+4 codes are not numbers.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

from bridge.policy.candidates import Found, digit_at

#: Where a bare run of digits is checked against the numbering plan.
REGIONS = ("US", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "AT", "CH", "IE", "SE", "DK", "CA")

_VALUE_START = re.compile(rb"[+(0-9]")
_VALUE_START_BYTES = frozenset(b"+(0123456789")
_DATE_SHAPES = re.compile(rb"\d{4}[-/. ]\d{2}[-/. ]\d{2}|\d{2}[-/. ]\d{2}[-/. ]\d{4}")
_ZIP4 = re.compile(rb"\d{5}-\d{4}$")
_LABEL = re.compile(rb"(?i)(?:phone|telephone|tel|mobile|mob|cell|fax|whatsapp|call)\W{0,4}$")
_GROUP_BREAK = re.compile(rb"[ ./\-]+(?=[0-9(])")
_EXTENSION = re.compile(rb"(?i)\s?(?:x|ext\.?|extension)\s?\d{1,6}$")


def phone_plan_regions() -> frozenset[str]:
    """The regions whose numbering plans libphonenumber knows."""
    return frozenset(phonenumbers.SUPPORTED_REGIONS)


@lru_cache(maxsize=4096)
def valid_in_a_region(number: str, regions: tuple[str, ...] = REGIONS) -> bool:
    """Whether the national ``number`` (digits only) is valid in one of ``regions``."""
    for region in regions:
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return True
    return False


def confirm_phone_number(
    data: bytes, start: int, end: int, regions: tuple[str, ...] = REGIONS
) -> Found:
    if digit_at(data, end):
        return []
    # Past the character before a national number, or the label before a labelled one.
    label_from = max(0, start - 16)
    if start >= end or data[start] not in _VALUE_START_BYTES:  # (mostly it starts there)
        begin = _VALUE_START.search(data, start, end)
        if begin is None:
            return []
        start = begin.start()
    text = data[start:end]
    # Every spelling of an extension holds an "x": most candidates skip the search.
    extension = _EXTENSION.search(text) if b"x" in text or b"X" in text else None
    number = text[: extension.start()] if extension is not None else text
    digits = number.translate(None, b" ()-./+\t")
    if len(digits) > 15 and extension is None and (text[0] == 0x2B or text.startswith(b"00")):
        # More digits than any number has, after a country code: the groups after the number
        # belong to something else ("+49 30 6604 8764 2018"); the longest run of whole groups
        # that is a number is one. (A national number is found again one character on.)
        for cut in reversed([m.start() for m in _GROUP_BREAK.finditer(number)]):
            shorter = confirm_phone_number(data, start, start + cut, regions)
            if shorter:
                return shorter
        return []
    if not 8 <= len(digits) <= 15 or not digits.isdigit():
        return []
    if text[0] != 0x2B and _DATE_SHAPES.match(text) is not None:
        return []  # a date, or a date and a time ("08.07.1997 15:20")
    zip4 = len(number) in (10, 11) and _ZIP4.match(number) is not None  # ($: or a newline on)
    if zip4 or number.isdigit():
        # Only these two shapes depend on a label before the value ("tel 12345-6789").
        labelled = _LABEL.search(data, label_from, start) is not None
        if zip4 and not labelled:
            return []  # a US ZIP+4 code
        if not zip4 and not labelled and not valid_in_a_region(number.decode(), regions):
            return []  # a bare run of digits: only a number some plan has
    return [(start, end)]
