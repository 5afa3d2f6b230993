"""Detectors of sensitive values in free text, built on RE2 (linear time, no backtracking).

Each detector is a pattern that finds candidates plus, where a pattern alone would be too eager,
a validator that confirms them (Luhn for payment cards, mod 97 for IBANs, the SSA's rules for US
SSNs). A :class:`DetectorSet` compiles all of them into one RE2 set, so a text with nothing in it
costs a single linear scan; only the detectors whose pattern hit are then run one by one.
Custom patterns from a policy go through the same engine, so none of them can hang the bridge.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import re2
from re2 import _re2

_UNANCHORED = re2._Anchor.UNANCHORED

Validator = Callable[[str], bool]
MAX_CUSTOM_PATTERN_LENGTH = 1000
_RE2_MAX_MEM = 8 << 20


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _RE2_MAX_MEM
    return options


@dataclass(frozen=True, slots=True)
class Detector:
    """A named class of sensitive value: a pattern, and optionally a validator of each hit."""

    name: str
    pattern: str
    description: str
    validate: Validator | None = None
    builtin: bool = True


def luhn_valid(digits: str) -> bool:
    """Luhn checksum of a string of digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _valid_card(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and digits[0] in "123456" and luhn_valid(digits)


def _valid_us_ssn(text: str) -> bool:
    if text[3] != text[6]:
        return False
    area, group, serial = text[0:3], text[4:6], text[7:11]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# Lengths of IBANs by country (ISO 13616 registry), to cut a candidate at the right place.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GI": 23, "GL": 18, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26,
    "IT": 27, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "UA": 29,
}  # fmt: skip


def iban_mod97_valid(compact: str) -> bool:
    """ISO 7064 mod 97-10 check of an IBAN without spaces."""
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(char, 36)) for char in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def _valid_iban(text: str) -> bool:
    compact = text.replace(" ", "")
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None:
        return len(compact) >= expected and iban_mod97_valid(compact[:expected])
    # Unknown country: the candidate may have swallowed a trailing group; try every cut.
    return any(iban_mod97_valid(compact[:length]) for length in range(len(compact), 14, -1))


def _valid_ipv4(text: str) -> bool:
    return all(int(octet) <= 255 for octet in text.split("."))


def _valid_ipv6(text: str) -> bool:
    groups = [group for group in text.split(":") if group]
    # "Foo::bar" in source code is a valid address ("d::ba"); demand a little more substance.
    if len(groups) < 2 or sum(len(group) for group in groups) < 4:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


_DATE_SHAPES = re.compile(r"\d{4}[-/. ]\d{2}[-/. ]\d{2}|\d{2}[-/. ]\d{2}[-/. ]\d{4}")


def _valid_phone(text: str) -> bool:
    digits = sum(map(str.isdigit, text))
    if not 8 <= digits <= 15:
        return False
    return text.startswith("+") or _DATE_SHAPES.fullmatch(text) is None


BUILTIN_DETECTORS: dict[str, Detector] = {
    detector.name: detector
    for detector in (
        Detector(
            "email",
            r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}\b",
            "e-mail addresses",
        ),
        Detector(
            "phone",
            r"\B\+\d{1,3}(?:[ .\-]?\(\d{1,4}\)|[ .\-]?\d{1,4})(?:[ .\-]?\d{2,5}){1,5}\b"
            r"|(?:\(\d{3}\)[ .\-]?|\b\d{3}[ .\-])\d{3}[ .\-]\d{4}\b"
            r"|\b0\d{1,4}[ /.\-]\d{2,4}(?:[ /.\-]?\d{2,4}){1,3}\b",
            "phone numbers: international (+CC …), North American, and national with a leading 0 and a separator after the area code",
            _valid_phone,
        ),
        Detector(
            "us_ssn",
            r"\b\d{3}[\- ]\d{2}[\- ]\d{4}\b",
            "US social security numbers (area, group and serial checked)",
            _valid_us_ssn,
        ),
        Detector(
            "credit_card",
            r"\b(?:\d[ \-]?){12,18}\d\b",
            "payment card numbers, 13 to 19 digits, Luhn-checked",
            _valid_card,
        ),
        Detector(
            "iban",
            r"\b[A-Z]{2}\d{2} ?(?:[A-Z0-9]{4} ?){2,7}[A-Z0-9]{1,4}\b",
            "international bank account numbers, mod-97-checked",
            _valid_iban,
        ),
        Detector(
            "ipv4",
            r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
            "IPv4 addresses",
            _valid_ipv4,
        ),
        Detector(
            "ipv6",
            # Full form (seven colons) or compressed (with "::"): clock times never match.
            r"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b"
            r"|(?:\b[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}\b)?",
            "IPv6 addresses",
            _valid_ipv6,
        ),
    )
}


def custom_detector(name: str, pattern: str, description: str = "") -> Detector:
    """A detector from a policy's pattern, refused (ValueError) unless RE2 accepts it safely."""
    if len(pattern) > MAX_CUSTOM_PATTERN_LENGTH:
        raise ValueError(
            f"pattern of {len(pattern)} characters exceeds the limit of {MAX_CUSTOM_PATTERN_LENGTH}"
        )
    try:
        compiled = re2.compile(pattern, _re2_options())
    except re2.error as error:
        reason = (
            error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else error
        )
        raise ValueError(
            f"not a valid RE2 pattern ({reason}); RE2 has no backreferences or lookaround"
        ) from None
    if compiled.search("") is not None:
        raise ValueError("the pattern matches the empty string, so it would match every text")
    return Detector(name, pattern, description or f"custom pattern {name}", None, builtin=False)


class Span(NamedTuple):
    """A confirmed hit: where it starts and ends, and which detector found it."""

    start: int
    end: int
    detector: str


class _Pattern:
    """One compiled RE2 pattern, matched on UTF-8 bytes through RE2's own Match.

    The ``re2`` module's finditer re-encodes text and converts offsets in Python for every
    match, which costs several times the scan itself; the bridge works on bytes and needs only
    the spans, so it calls the compiled pattern directly (one linear scan per match found).
    """

    __slots__ = ("_regexp",)

    def __init__(self, pattern: str) -> None:
        self._regexp = _re2.RE2(pattern.encode(), _re2_options())
        if not self._regexp.ok():
            raise ValueError(self._regexp.error())

    def matches(self, data: bytes, position: int = 0) -> Iterator[tuple[tuple[int, int], ...]]:
        """Each match from ``position`` on, left to right, as the spans of all its groups."""
        end = len(data)
        while position <= end:
            spans = self._regexp.Match(_UNANCHORED, data, position, end)
            start, stop = spans[0]
            if start < 0:
                return
            yield spans
            position = stop if stop > start else stop + 1


@dataclass(slots=True)
class DetectorSet:
    """Several detectors compiled together; scans UTF-8 bytes (or text, encoded once)."""

    detectors: tuple[Detector, ...]
    _set: Any = field(init=False, repr=False)
    _patterns: tuple[_Pattern, ...] = field(init=False, repr=False)
    _combined: dict[tuple[str, ...], tuple[_Pattern, tuple[Detector, ...]]] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        self._set = re2.Set.SearchSet(_re2_options())
        for detector in self.detectors:
            self._set.Add(detector.pattern)
        self._set.Compile()
        self._patterns = tuple(_Pattern(detector.pattern) for detector in self.detectors)
        self._combined = {}

    @classmethod
    def of(cls, detectors: Iterable[Detector]) -> DetectorSet:
        return cls(tuple(detectors))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(detector.name for detector in self.detectors)

    def classes_in(self, text: str | bytes, stop_unless: frozenset[str] | None = None) -> list[str]:
        """The detector classes with at least one confirmed hit in ``text``.

        With ``stop_unless``, returns as soon as one class outside it is confirmed (the leak
        guard needs only the first forbidden class).
        """
        data = text.encode() if isinstance(text, str) else text
        hits = self._set.Match(data)
        if not hits:
            return []
        found: list[str] = []
        for index in sorted(hits):
            detector = self.detectors[index]
            if detector.validate is None or self._confirmed(index, data):
                found.append(detector.name)
                if stop_unless is not None and detector.name not in stop_unless:
                    break
        return found

    def _confirmed(self, index: int, data: bytes) -> bool:
        validate = self.detectors[index].validate
        assert validate is not None
        for spans in self._patterns[index].matches(data):
            start, stop = spans[0]
            if validate(data[start:stop].decode("utf-8", "replace")):
                return True
        return False

    def spans(self, text: str | bytes, only: tuple[str, ...] | None = None) -> list[Span]:
        """Confirmed hits (of the detectors in ``only``, or all), sorted, overlaps merged.

        Where two detectors match the same text, the one named first in ``only`` wins (with
        ``only`` omitted: custom detectors before built-in ones, as they are the more specific).
        Offsets are in characters for ``str`` input and in bytes for ``bytes`` input. One
        combined pattern finds the leftmost candidate of any detector; where the winning
        candidate fails its validator, the other detectors are tried at that place, so a
        look-alike of one class does not hide a real value of another.
        """
        data = text.encode() if isinstance(text, str) else text
        combined, members = self._combined_for(only)
        spans: list[Span] = []
        recovered = False
        for groups in combined.matches(data):
            start, stop = groups[0]
            winner = 1
            while groups[winner][0] < 0:
                winner += 1
            detector = members[winner - 1]
            validate = detector.validate
            if validate is None or validate(data[start:stop].decode("utf-8", "replace")):
                spans.append(Span(start, stop, detector.name))
            else:
                spans.extend(self._others_at(data, start, stop, members, skip=winner - 1))
                recovered = True
        # The combined scan yields disjoint spans left to right; only recovery can overlap.
        if recovered:
            spans = _merge(spans)
        if spans and isinstance(text, str) and not text.isascii():
            spans = [_to_characters(data, span) for span in spans]
        return spans

    def _others_at(
        self, data: bytes, start: int, stop: int, members: tuple[Detector, ...], skip: int
    ) -> list[Span]:
        found = []
        for position, detector in enumerate(members):
            if position == skip:
                continue
            pattern = self._patterns[self.detectors.index(detector)]
            for groups in pattern.matches(data, start):
                begin, end = groups[0]
                if begin >= stop:
                    break
                text = data[begin:end].decode("utf-8", "replace")
                if detector.validate is None or detector.validate(text):
                    found.append(Span(begin, end, detector.name))
        return found

    def _combined_for(self, only: tuple[str, ...] | None) -> tuple[_Pattern, tuple[Detector, ...]]:
        if only is None:
            only = tuple(d.name for d in self.detectors if not d.builtin) + tuple(
                d.name for d in self.detectors if d.builtin
            )
        key = only
        cached = self._combined.get(key)
        if cached is None:
            by_name = {d.name: d for d in self.detectors}
            members = tuple(by_name[name] for name in key if name in by_name)
            if not members:
                raise ValueError(f"no detectors named {sorted(key)}")
            cached = (_Pattern("|".join(f"({d.pattern})" for d in members)), members)
            self._combined[key] = cached
        return cached


def _to_characters(data: bytes, span: Span) -> Span:
    start = len(data[: span.start].decode("utf-8", "replace"))
    return Span(
        start, start + len(data[span.start : span.end].decode("utf-8", "replace")), span.detector
    )


def _merge(spans: Sequence[Span]) -> list[Span]:
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            if span.end > last.end:
                merged[-1] = Span(last.start, span.end, last.detector)
            continue
        merged.append(span)
    return merged
