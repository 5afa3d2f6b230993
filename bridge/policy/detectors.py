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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

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
    digits = sum(char.isdigit() for char in text)
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
            r"|\b0\d{1,4}(?:[ /.\-]?\d{2,4}){2,4}\b",
            "phone numbers: international (+CC …), North American, and national with a leading 0",
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
            r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}",
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


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    detector: str


@dataclass(slots=True)
class DetectorSet:
    """Several detectors compiled together; scans str or UTF-8 bytes."""

    detectors: tuple[Detector, ...]
    _set: Any = field(init=False, repr=False)
    _regexes: tuple[Any, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        options = _re2_options()
        self._set = re2.Set.SearchSet(options)
        for detector in self.detectors:
            self._set.Add(detector.pattern)
        self._set.Compile()
        self._regexes = tuple(re2.compile(d.pattern, options) for d in self.detectors)

    @classmethod
    def of(cls, detectors: Iterable[Detector]) -> DetectorSet:
        return cls(tuple(detectors))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(detector.name for detector in self.detectors)

    def classes_in(self, text: str | bytes, stop_unless: frozenset[str] = frozenset()) -> list[str]:
        """The detector classes with at least one confirmed hit in ``text``.

        With ``stop_unless``, returns as soon as one class outside it is confirmed (the leak
        guard needs only the first forbidden class).
        """
        hits = self._set.Match(text)
        if not hits:
            return []
        found: list[str] = []
        for index in sorted(hits):
            detector = self.detectors[index]
            if detector.validate is None or self._confirmed(index, text):
                found.append(detector.name)
                if stop_unless and detector.name not in stop_unless:
                    break
        return found

    def _confirmed(self, index: int, text: str | bytes) -> bool:
        validate = self.detectors[index].validate
        assert validate is not None
        for match in self._regexes[index].finditer(text):
            hit = match.group()
            if validate(hit.decode("utf-8", "replace") if isinstance(hit, bytes) else hit):
                return True
        return False

    def spans(self, text: str, only: frozenset[str] | None = None) -> list[Span]:
        """Confirmed hits in ``text`` (of the detectors in ``only``, or all), sorted, merged."""
        hits = self._set.Match(text)
        if not hits:
            return []
        spans: list[Span] = []
        for index in hits:
            detector = self.detectors[index]
            if only is not None and detector.name not in only:
                continue
            for match in self._regexes[index].finditer(text):
                if detector.validate is None or detector.validate(match.group()):
                    spans.append(Span(match.start(), match.end(), detector.name))
        return _merge(spans)


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
