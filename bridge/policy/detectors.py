"""Detectors of sensitive values in free text, built on RE2 (linear time, no backtracking).

Each detector is a pattern that finds *candidates* plus, where a pattern alone would be too
eager, a ``confirm`` function that returns the confirmed values inside a candidate (Luhn for
payment cards, mod 97 for IBANs, the SSA's rules for US SSNs, and the boundaries RE2 cannot
express without lookaround). A :class:`DetectorSet` compiles all of them into one RE2 set, so a
text with nothing in it costs a single linear scan; only the detectors whose pattern hit are then
run, each on its own and left to right, so a look-alike of one class never hides a value of
another and the work stays linear in the text.

Detection runs on the normalised view of a text (:mod:`bridge.policy.textview`): the patterns
are ASCII, and a value written with fullwidth digits, an en dash or a zero-width space inside is
found all the same. Values touching letters (``SSN536-22-8751``, ``card4111…``, ``Tel+44…``) are
found too: digit runs are bounded by digits, not by word boundaries.

Custom patterns from a policy go through the same engine, so none of them can hang the bridge.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import re2
from re2 import _re2

from bridge.policy import nationalids as ids
from bridge.policy.candidates import DIGITS, Found, digit_at
from bridge.policy.lookalikes import LOOKALIKES
from bridge.policy.phones import confirm_phone_number
from bridge.policy.textview import TextView, needs_view, reading

_UNANCHORED = re2._Anchor.UNANCHORED

Confirm = Callable[[bytes, int, int], Found]
"""Given the text (UTF-8 bytes) and a candidate's span, the spans of confirmed values in it."""

MAX_CUSTOM_PATTERN_LENGTH = 1000
_RE2_MAX_MEM = 8 << 20
# The alternation of every detector, searched once per candidate: with the 8 MiB of the others
# its DFA runs out of room on ordinary text and RE2 falls back to its NFA, which made detection
# about twice as slow. A bound still (memory for DFA states, never exceeded), one per order.
_RE2_COMBINED_MEM = 64 << 20
# Separators between the digit groups of a card or an SSN, after normalisation (every dash is
# '-', every space ' '): one to three of them, so "4111  1111" and "536\n22\n8751" are numbers.
_SEP = r"[ \t\r\n.\-/_]"
_GROUP_SEP = re.compile(rb"[ \t\r\n.\-/_]+")
_DOT = 0x2E


def _re2_options(max_mem: int = _RE2_MAX_MEM) -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = max_mem
    return options


def _compiled_set(patterns: Iterable[str], anchor: Any) -> Any:
    """RE2's own set object (the ``re2`` module's wrapper costs a Python call per match).

    Raises ``re2.error`` when RE2 cannot compile the patterns together.
    """
    compiled = _re2.Set(anchor, _re2_options())
    for pattern in patterns:
        if compiled.Add(pattern.encode()) < 0:
            raise re2.error(f"RE2 refused the pattern {pattern!r}")
    if not compiled.Compile():
        raise re2.error("failed to compile Set")
    return compiled


@dataclass(frozen=True, slots=True)
class Detector:
    """A named class of sensitive value: a pattern, and optionally a confirmation of each hit.

    ``bounded`` says a candidate has a bounded length, so after a refused candidate the scan may
    look again one character further on (a refused run of unbounded length is skipped whole).

    ``digit_bounded`` says the value ends in a digit and never runs on into another one (an
    11-digit tax id is not the start of a 13-digit EAN): the scan looks for the pattern followed
    by a non-digit or the end of the text, so such a run is no candidate at all, instead of a
    candidate refused (a refusal makes the scan read the rest of the text detector by detector).
    Only for patterns with one possible end per start, so this drops nothing but refusals.
    """

    name: str
    pattern: str
    description: str
    confirm: Confirm | None = None
    builtin: bool = True
    bounded: bool = True
    digit_bounded: bool = False

    @property
    def scan_pattern(self) -> str:
        """What the scan searches: the pattern, and the character after it where it counts."""
        return f"(?:{self.pattern})(?:[^0-9]|$)" if self.digit_bounded else self.pattern

    def value_end(self, data: bytes, start: int, stop: int) -> int:
        """The end of a candidate the scan found at ``data[start:stop]``, without the
        character after the value that a digit-bounded pattern reads."""
        if self.digit_bounded and stop > start and data[stop - 1] not in DIGITS:
            return stop - 1
        return stop


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


def _groups(data: bytes, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """The digit groups of a run: (start, end, separator before it) each."""
    groups: list[tuple[int, int, bytes]] = []
    position = start
    separator = b""
    for match in _GROUP_SEP.finditer(data, start, end):
        groups.append((position, match.start(), separator))
        separator = match.group()
        position = match.end()
    groups.append((position, end, separator))
    return groups


# Card numbers are printed in groups of four (the last may be shorter), or 4-6-5 / 4-6-4.
def _card_shaped(sizes: Sequence[int]) -> bool:
    if len(sizes) == 1:
        return True
    if len(sizes) == 3 and sizes[0] == 4 and sizes[1] == 6 and sizes[2] in (4, 5):
        return True
    return all(size == 4 for size in sizes[:-1]) and 1 <= sizes[-1] <= 4


def _confirm_card(data: bytes, start: int, end: int) -> Found:
    """Card numbers in a run of digit groups: every group-aligned window is tried.

    A 19-digit run that fails Luhn may hold a valid 16-digit card after a 3-digit group
    (``cvv 123 4111 1111 1111 1111``); a bare run of digits is one group and is not split.
    """
    groups = _groups(data, start, end)
    found: Found = []
    covered = start
    for first in range(len(groups)):
        if groups[first][0] < covered:
            continue
        sizes: list[int] = []
        digits = b""
        best: tuple[int, int] | None = None
        for last in range(first, len(groups)):
            begin, stop, _ = groups[last]
            sizes.append(stop - begin)
            digits += data[begin:stop]
            if len(digits) > 19:
                break
            if (
                len(digits) >= 12
                and digits[0] in b"123456"
                and _card_shaped(sizes)
                and luhn_valid(digits.decode())
                and card_issuer_known(digits)
            ):
                best = (groups[first][0], stop)
        if best is not None and not _product_code(data, *best):
            found.append(best)
            covered = best[1]
    return found


def _product_code(data: bytes, start: int, end: int) -> bool:
    """An EAN/GTIN/UPC/ISBN written as one run of 8, 12, 13 or 14 digits right after its name:
    a product code, not a card. A number grouped as cards are printed is a card whatever
    precedes it (a word before a value must never hide it)."""
    run = data[start:end]
    return (
        run.isdigit()
        and len(run) in (8, 12, 13, 14)
        and _product_code_label.search(data, max(0, start - 16), start) is not None
    )


# Issuer identification numbers (the first digits) and the lengths each network issues:
# (first, last prefix of a range), the lengths issued, the prefixes' width in digits.
_IIN_RANGES: tuple[tuple[int, int, frozenset[int], int], ...] = (
    (4, 4, frozenset({13, 16, 19}), 1),  # Visa
    (51, 55, frozenset({16}), 2),  # Mastercard
    (2221, 2720, frozenset({16}), 4),  # Mastercard 2-series
    (2200, 2204, frozenset({16, 17, 18, 19}), 4),  # Mir
    (34, 34, frozenset({15}), 2),  # American Express
    (37, 37, frozenset({15}), 2),
    (300, 305, frozenset({14, 15, 16, 17, 18, 19}), 3),  # Diners Club
    (36, 36, frozenset({14, 15, 16, 17, 18, 19}), 2),
    (38, 39, frozenset({14, 15, 16, 17, 18, 19}), 2),
    (3528, 3589, frozenset({16, 17, 18, 19}), 4),  # JCB
    (6011, 6011, frozenset({16, 17, 18, 19}), 4),  # Discover
    (644, 649, frozenset({16, 17, 18, 19}), 3),
    (65, 65, frozenset({16, 17, 18, 19}), 2),
    (62, 62, frozenset({16, 17, 18, 19}), 2),  # UnionPay
    (81, 82, frozenset({16, 17, 18, 19}), 2),  # UnionPay, RuPay
    (50, 50, frozenset({12, 13, 14, 15, 16, 17, 18, 19}), 2),  # Maestro
    (56, 69, frozenset({12, 13, 14, 15, 16, 17, 18, 19}), 2),  # Maestro and others in 6
    (60, 60, frozenset({16, 19}), 2),  # RuPay
    (1, 1, frozenset({15}), 1),  # UATP
)
_product_code_label = re.compile(rb"(?i)\b(?:ean(?:-?1[34])?|gtin|upc|isbn(?:-?13)?)\W{0,4}$")


def card_issuer_known(digits: bytes) -> bool:
    """Whether a number of this length starting with these digits is something a card network
    issues (Visa 13/16/19, Mastercard 51-55 and 2221-2720, Amex 34/37, Diners, JCB 3528-3589,
    Discover, UnionPay, Maestro 12-19, Mir, RuPay, UATP)."""
    length = len(digits)
    prefixes = [int(digits[:width]) for width in range(1, 5)]
    return any(
        first <= prefixes[width - 1] <= last and length in lengths
        for first, last, lengths, width in _IIN_RANGES
    )


_SSN_LABELLED = re.compile(rb"\d{9}")
_SSN_SHAPE = re.compile(rb"(\d{3})([ \t\r\n.\-/_]{1,3})(\d{2})([ \t\r\n.\-/_]{1,3})(\d{4})")


def _confirm_ssn(data: bytes, start: int, end: int) -> Found:
    if digit_at(data, end):
        return []
    shaped = _SSN_SHAPE.search(data, start, end)
    if shaped is not None:
        area, first, group, second, serial = shaped.groups()
        if set(first) != set(second):
            return []  # mixed separators ("123-45 6789") are not written by people
    else:
        # "ssn: 536228751": a labelled run of nine digits.
        shaped = _SSN_LABELLED.search(data, end - 9, end)
        if shaped is None:
            return []
        value = shaped.group()
        area, group, serial = value[:3], value[3:5], value[5:]
    return [shaped.span()] if _ssn_parts_valid(area, group, serial) else []


def _ssn_parts_valid(area: bytes, group: bytes, serial: bytes) -> bool:
    return (
        area not in (b"000", b"666") and area[:1] != b"9" and group != b"00" and serial != b"0000"
    )


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


def _confirm_iban(data: bytes, start: int, end: int) -> Found:
    text = data[start:end].decode("ascii", "replace").upper()
    # Positions of the alphanumerics, so a cut can be mapped back past the separators.
    places = [index for index, char in enumerate(text) if char.isalnum()]
    compact = "".join(text[index] for index in places)
    expected = _IBAN_LENGTHS.get(compact[:2])
    # A country outside the registry is no IBAN: trying every cut of a hex string (a UUID)
    # would pass mod 97 one time in 97.
    if expected is None or len(compact) < expected:
        return []
    if iban_mod97_valid(compact[:expected]):
        return [(start, start + places[expected - 1] + 1)]
    return []


def _confirm_ipv4(data: bytes, start: int, end: int) -> Found:
    if data[start] not in DIGITS:
        start += 1  # the character before the address
    # Part of a longer dotted number (a version, an OID) is no address.
    if digit_at(data, end) or (
        end + 1 < len(data) and data[end] == _DOT and digit_at(data, end + 1)
    ):
        return []
    octets = data[start:end].split(b".")
    return [(start, end)] if all(int(octet) <= 255 for octet in octets) else []


def _confirm_ipv6(data: bytes, start: int, end: int) -> Found:
    text = data[start:end].decode("ascii", "replace")
    groups = [group for group in text.split(":") if group]
    # "Foo::bar" in source code is a valid address ("d::ba"); demand a little more substance.
    if len(groups) < 2 or sum(len(group) for group in groups) < 4:
        return []
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return []
    return [(start, end)]


_S = r"[ .\-/]{1,2}"
# Before a national number: not a digit, nor a separator after a digit ("08.07.1997 15").
_NOT_AFTER_A_NUMBER = r"(?:^|[^0-9.\-/]|[A-Za-z][.\-/])"
_PHONE_LABELS = r"(?i:phone|telephone|tel|mobile|mob|cell|fax|whatsapp)"
_SSN_LABELS = r"(?i:ssn|social security(?: number| no)?|soc\.? ?sec\.?(?: ?no)?)"

# In order of specificity: the leak guard names the first class it confirms. A checksum with a
# shape rule (SSN, IBAN, card) says more than a phone number's loose shape, and an IBAN (letters
# and digits) more than the card-shaped digit groups that may sit inside it.
BUILTIN_DETECTORS: dict[str, Detector] = {
    detector.name: detector
    for detector in (
        Detector(
            "email",
            r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}\b",
            "e-mail addresses",
        ),
        Detector(
            "private_key",
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
            r"(?:[A-Za-z0-9+/=\s\\]*-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?",
            "PEM private keys (the whole block where its end is there)",
            bounded=False,
        ),
        Detector(
            "aws_access_key",
            r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z2-7]{16}\b",
            "AWS access key ids",
        ),
        Detector(
            "jwt",
            r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}",
            "JSON Web Tokens (the header decodes and names an algorithm)",
            ids.confirm_jwt,
            bounded=False,
        ),
        Detector(
            "api_key",
            r"(?i:\b(?:api[_\-]?key|apikey|secret[_\-]?key|client[_\-]?secret|access[_\-]?token"
            r"|auth[_\-]?token|aws_secret_access_key|secret|password|passwd)[\"']?\s{0,3}[:=]"
            r"\s{0,3}[\"']?[A-Za-z0-9_\-+/=.]{16,})",
            "secrets assigned to a name such as api_key, secret, access_token or password (a value "
            "of 16 or more characters with letters and digits)",
            ids.confirm_secret_assignment,
            bounded=False,
        ),
        Detector(
            "us_ssn",
            rf"(?:^|[^0-9])\d{{3}}{_SEP}{{1,3}}\d{{2}}{_SEP}{{1,3}}\d{{4}}"
            rf"|{_SSN_LABELS}[^0-9A-Za-z]{{0,4}}\d{{9}}",
            "US social security numbers (area, group and serial checked), and labelled runs of "
            "nine digits",
            _confirm_ssn,
            digit_bounded=True,
        ),
        Detector(
            "iban",
            r"(?i:[a-z]{2}\d{2}(?:[ \-]?[a-z0-9]{4}){2,7}(?:[ \-]?[a-z0-9]{1,4})?)",
            "international bank account numbers, mod-97-checked, in either case",
            _confirm_iban,
        ),
        Detector(
            "fr_nir",
            r"(?:^|[^0-9])[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[ABab]) ?\d{3} ?\d{3} ?\d{2}",
            "French social security numbers (NIR), key checked",
            ids.confirm_fr_nir,
            digit_bounded=True,
        ),
        Detector(
            "uk_nino",
            r"(?i:\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b)",
            "UK National Insurance numbers (prefix letters checked)",
            ids.confirm_uk_nino,
        ),
        Detector(
            "it_fiscal_code",
            r"(?i:\b[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z]"
            r"[0-9LMNPQRSTUV]{3}[A-Z]\b)",
            "Italian fiscal codes (codice fiscale), check letter checked",
            ids.confirm_it_fiscal_code,
        ),
        Detector(
            "es_nie",
            r"(?i:\b[XYZ]-?\d{7}-?[A-Z]\b)",
            "Spanish foreigner identity numbers (NIE), control letter checked",
            ids.confirm_es_nie,
        ),
        Detector(
            "es_dni",
            r"(?:^|[^0-9])\d{8}-?[A-Za-z]\b",
            "Spanish identity numbers (DNI/NIF), control letter checked",
            ids.confirm_es_dni,
        ),
        Detector(
            "de_tax_id",
            r"(?:^|[^0-9+])[1-9]\d(?: ?\d{3}){3}",
            "German tax identification numbers (Steuer-ID), digit rule and check digit checked",
            ids.confirm_de_tax_id,
            digit_bounded=True,
        ),
        Detector(
            "uk_nhs",
            r"(?:^|[^0-9])\d{3}[ \-]?\d{3}[ \-]?\d{4}",
            "UK NHS numbers, mod-11 checked, after the word NHS",
            ids.confirm_uk_nhs,
            digit_bounded=True,
        ),
        Detector(
            "nl_bsn",
            r"(?:^|[^0-9])\d{9}",
            "Dutch citizen service numbers (BSN), 11-proof checked, after the word BSN",
            ids.confirm_nl_bsn,
            digit_bounded=True,
        ),
        Detector(
            "se_personnummer",
            r"(?:^|[^0-9])(?:\d{2})?\d{6}[\-+]?\d{4}",
            "Swedish personal identity numbers, date and Luhn checked (without '-' or '+' only "
            "after the word personnummer)",
            ids.confirm_se_personnummer,
            digit_bounded=True,
        ),
        Detector(
            "passport",
            r"(?i:passport|reisepass|passeport|pasaporte|passaporto|paspoort)"
            r"(?i:[ \-]?(?:no\.?|number|nr\.?|n°|nummer|numéro|número|numero|#))?[ :.\-]{0,4}"
            r"[A-Za-z0-9]{6,9}\b",
            "passport numbers (6-9 letters and digits) right after a word for passport",
            ids.confirm_passport,
        ),
        Detector(
            "credit_card",
            rf"\d(?:{_SEP}{{0,3}}\d){{11,}}",
            "payment card numbers, 12 to 19 digits as the card networks issue them (issuer "
            "prefix and length checked), Luhn-checked; an ungrouped EAN/GTIN/UPC/ISBN right after "
            "its name is not a card",
            _confirm_card,
            bounded=False,
        ),
        Detector(
            "phone",
            # International (+CC or 00CC), North American, national with a leading 0 (the area
            # code maybe in parentheses), and a bare run of digits after a label such as "tel".
            # RE2 has no lookbehind: "not after a number" is a consumed character (or two: a
            # letter and a separator, "Tel.030 …"), or the start of the text.
            r"(?:\+\d{1,3}(?:[ .\-/]{0,2}\(\d{1,4}\)|[ .\-/]{0,2}\d{1,4})(?:[ .\-/]{0,2}\d{1,5}){1,5}"
            rf"|{_NOT_AFTER_A_NUMBER}(?:00[1-9]\d{{0,2}}(?:{_S}\(\d{{1,4}}\)|{_S}\d{{1,4}})(?:{_S}\d{{1,5}}){{1,5}}"
            rf"|(?:\(\d{{3}}\)[ .\-]{{0,2}}|\d{{3}}{_S})\d{{3}}{_S}\d{{4}}"
            rf"|0\d{{1,4}}{_S}\d{{2,4}}(?:[ .\-/]{{0,2}}\d{{2,4}}){{1,3}}"
            rf"|\(0\d{{1,4}}\)[ .\-/]{{0,2}}\d{{2,8}}(?:{_S}\d{{2,4}}){{0,3}}"
            rf"|\d{{10,11}})"
            rf"|{_PHONE_LABELS}[^0-9A-Za-z]{{0,4}}\+?\d{{8,15}})"
            # an extension: x123, ext. 123, extension 123
            r"(?:[ ]?(?i:x|ext\.?|extension)[ ]?\d{1,6})?",
            "phone numbers: international (+CC or 00CC …), North American, national with a "
            "leading 0 (area code maybe in parentheses), with an extension or not; bare runs of "
            "10-11 digits valid in a numbering plan, and labelled runs of digits",
            confirm_phone_number,
        ),
        Detector(
            "ipv4",
            r"(?:^|[^0-9.])(?:\d{1,3}\.){3}\d{1,3}",
            "IPv4 addresses",
            _confirm_ipv4,
            digit_bounded=True,
        ),
        Detector(
            "ipv6",
            # Full form (seven colons) or compressed (with "::"): clock times never match.
            r"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b"
            r"|(?:\b[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}\b)?",
            "IPv6 addresses",
            _confirm_ipv6,
        ),
    )
}


def phones_in(detector: Detector, regions: Sequence[str]) -> Detector:
    """The phone detector with bare national numbers checked against ``regions``' plans."""
    chosen = tuple(regions)

    def confirm(data: bytes, start: int, end: int) -> Found:
        return confirm_phone_number(data, start, end, chosen)

    return replace(detector, confirm=confirm)


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


# A named tuple made without the Python-level __new__ of its class: half the time, same object.
_TUPLE = tuple.__new__


class _Pattern:
    """One compiled RE2 pattern, matched on UTF-8 bytes through RE2's own Match.

    The ``re2`` module's finditer re-encodes text and converts offsets in Python for every
    match, which costs several times the scan itself; the bridge works on bytes and needs only
    the spans, so it calls the compiled pattern directly.
    """

    __slots__ = ("_regexp",)

    def __init__(self, pattern: str, max_mem: int = _RE2_MAX_MEM) -> None:
        self._regexp = _re2.RE2(pattern.encode(), _re2_options(max_mem))
        if not self._regexp.ok():
            raise ValueError(self._regexp.error())

    def search(self, data: bytes, position: int) -> tuple[int, int]:
        """The leftmost match at or after ``position``: (start, end), or (-1, -1)."""
        spans = self._regexp.Match(_UNANCHORED, data, position, len(data))
        return spans[0]  # type: ignore[no-any-return]

    def search_within(self, data: bytes, start: int, end: int) -> tuple[int, int]:
        """The leftmost match inside ``data[start:end]`` (the text around it is context)."""
        spans = self._regexp.Match(_UNANCHORED, data, start, end)
        return spans[0]  # type: ignore[no-any-return]


class _Together:
    """Several detectors' patterns as one alternation, listed in the order that ranks them.

    Finding the next candidate is one search without captures (RE2's DFA: fast); which detector
    it belongs to is read by an anchored RE2 set over the candidate alone, which costs only the
    candidate's length (RE2's capture groups would cost several times the search).

    The look-alikes (:mod:`bridge.policy.lookalikes`) come first in the search, so a harmless
    token is read whole where a detector's candidate would start at the same place, and last in
    the ranks, so a detector matching the same text whole is asked before them.
    """

    __slots__ = ("exact", "find", "members")

    def __init__(
        self, detectors: Sequence[Detector], members: tuple[int, ...], lookalikes: bool
    ) -> None:
        self.members = members
        chosen = [detectors[index].scan_pattern for index in members]
        read = [lookalike.pattern for lookalike in LOOKALIKES] if lookalikes else []
        self.find = _Pattern(
            "|".join(f"(?:{pattern})" for pattern in read + chosen), _RE2_COMBINED_MEM
        )
        try:
            self.exact = _compiled_set(chosen + read, re2._Anchor.ANCHOR_BOTH)
        except re2.error:
            raise ValueError(
                f"the detectors {', '.join(detectors[index].name for index in members)} "
                f"together are too large for RE2's memory budget of {_RE2_MAX_MEM >> 20} MiB"
            ) from None


@dataclass(slots=True)
class DetectorSet:
    """Several detectors compiled together; scans normalised text.

    Raises ValueError when RE2 cannot compile them together within its memory budget (a
    policy's custom patterns can be too big in combination even when each compiles alone).
    """

    detectors: tuple[Detector, ...]
    _set: Any = field(init=False, repr=False)
    _patterns: tuple[_Pattern, ...] = field(init=False, repr=False)
    _index: dict[str, int] = field(init=False, repr=False)
    _default_order: tuple[str, ...] = field(init=False, repr=False)
    _combined: dict[tuple[str, ...], _Together] = field(init=False, repr=False)
    _lookalikes: _Pattern | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            self._set = _compiled_set((d.scan_pattern for d in self.detectors), _UNANCHORED)
        except re2.error:
            raise ValueError(
                "the detectors together are too large for RE2's memory budget of "
                f"{_RE2_MAX_MEM >> 20} MiB; simplify the custom patterns (bounded repeats of "
                "character classes such as \\pL{200} are the usual cause)"
            ) from None
        self._patterns = tuple(_Pattern(detector.scan_pattern) for detector in self.detectors)
        self._index = {detector.name: index for index, detector in enumerate(self.detectors)}
        self._default_order = tuple(d.name for d in self.detectors if not d.builtin) + tuple(
            d.name for d in self.detectors if d.builtin
        )
        self._combined = {}
        # Look-alikes are read whole only where every detector is a built-in one: a policy's
        # own pattern may look for exactly such a token (dates of birth). One rule for the
        # set, so masks and the leak guard of a policy agree on what a look-alike hides.
        self._lookalikes = (
            _Pattern("|".join(f"(?:{lookalike.pattern})" for lookalike in LOOKALIKES))
            if all(detector.builtin for detector in self.detectors)
            else None
        )

    @classmethod
    def of(cls, detectors: Iterable[Detector]) -> DetectorSet:
        return cls(tuple(detectors))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(detector.name for detector in self.detectors)

    def classes_in(self, text: str | bytes, stop_unless: frozenset[str] | None = None) -> list[str]:
        """The detector classes with at least one confirmed hit in ``text``.

        Text is read through its normalised view; bytes are scanned as they are (the leak guard
        builds its own reading of serialised JSON first). With ``stop_unless``, returns as soon
        as one class outside it is confirmed (the leak guard needs only the first forbidden one).
        Every detector looks on its own (a permitted value never hides a forbidden one inside
        it); a value wholly inside a look-alike token is not counted, as masks read it past too.
        """
        data = reading(text).encode() if isinstance(text, str) else text
        hits = self._set.Match(data)
        if not hits:
            return []
        # Look-alike tokens checked so far (start -> end, -1 for none), shared by the detectors.
        lookalikes: dict[int, int] | None = {} if self._lookalikes is not None else None
        found: list[str] = []
        for index in sorted(hits):
            detector = self.detectors[index]
            if next(self._found(index, data, lookalikes=lookalikes), None) is not None:
                found.append(detector.name)
                if stop_unless is not None and detector.name not in stop_unless:
                    break
        return found

    def _in_lookalike(self, data: bytes, start: int, stop: int, seen: dict[int, int]) -> bool:
        """Whether ``data[start:stop]`` lies wholly inside a look-alike token (where this set
        reads them; ``seen``: the tokens checked so far on this text). Only the text around it
        is searched: a token is at most ``_LOOKALIKE_REACH`` long, so each candidate costs a
        bounded search, not the text's."""
        if self._lookalikes is None:
            return False
        position = max(0, start - _LOOKALIKE_REACH)
        window_end = min(len(data), stop + _LOOKALIKE_REACH)
        while position <= start:
            begin, finish = self._lookalikes.search_within(data, position, window_end)
            if begin < 0 or begin > start:
                return False
            end = seen.get(begin)
            if end is None:
                ends = (lookalike.end(data, begin, finish) for lookalike in LOOKALIKES)
                end = seen[begin] = next((end for end in ends if end >= 0), -1)
            if end >= stop:
                return True
            position = max(end, begin + 1)  # past a token, or one on from one that failed
        return False

    def _found(
        self,
        index: int,
        data: bytes,
        known: dict[tuple[int, int, int], Found] | None = None,
        begin: int = 0,
        lookalikes: dict[int, int] | None = None,
    ) -> Iterator[tuple[int, int]]:
        """Each confirmed value of one detector in ``data``, left to right (``known``: the
        candidates already confirmed or refused on this text, by detector and span; with
        ``lookalikes``, the look-alike tokens seen so far, a candidate wholly inside one is
        passed over unchecked, as masks read it past too)."""
        detector = self.detectors[index]
        confirm = detector.confirm
        pattern = self._patterns[index]
        position = begin
        end = len(data)
        while position <= end:
            start, stop = pattern.search(data, position)
            if start < 0:
                return
            stop = detector.value_end(data, start, stop)
            if lookalikes is not None and self._in_lookalike(data, start, stop, lookalikes):
                position = max(stop, start + 1)
                continue
            if confirm is None:
                yield start, stop
                position = stop if stop > start else stop + 1
                continue
            key = (index, start, stop)
            confirmed = known.get(key) if known is not None else None
            if confirmed is None:
                confirmed = confirm(data, start, stop)
            yield from confirmed
            # A refused candidate of bounded length may overlap a real value starting inside it,
            # and one confirmed in part may hold another after the value.
            if detector.bounded:
                position = confirmed[-1][1] if confirmed else start + 1
                position = max(position, start + 1)
            else:
                position = max(stop, start + 1)

    def spans(self, text: str, only: tuple[str, ...] | None = None) -> list[Span]:
        """Confirmed hits in ``text`` (of the detectors in ``only``, or all), sorted, merged.

        Offsets index ``text`` as given: detection reads its normalised view, and each hit is
        mapped back to the original characters (invisible ones inside a value included). Where
        hits overlap they are merged, named by the detector listed first in ``only`` (with
        ``only`` omitted: custom detectors before built-in ones, as they are the more specific).
        """
        view = TextView.of(text) if needs_view(text) else None
        reading = view.text if view is not None else text
        data = reading.encode()
        order = self._default_order if only is None else only
        known: dict[tuple[int, int, int], Found] = {}
        found, refused_at = self._scan_together(order, data, known)
        if refused_at >= 0:
            # From the refused candidate on, every detector on its own; before it, the
            # combined pass saw every candidate already.
            found += self._scan_each(self.together(order).members, data, known, refused_at)
        if not found:
            return []
        spans = _merge(found, order)
        if not reading.isascii():
            spans = _to_characters(data, spans)
        if view is not None and view.changed:
            spans = [Span(*view.to_original(s.start, s.end), s.detector) for s in spans]
        return spans

    def together(self, order: tuple[str, ...]) -> _Together:
        """The detectors in ``order`` as one pattern (compiled once per order).

        Raises ValueError for an unknown name, or when RE2 cannot compile them together.
        """
        cached = self._combined.get(order)
        if cached is None:
            unknown = [name for name in order if name not in self._index]
            if unknown or not order:
                raise ValueError(f"no detectors named {unknown or list(order)}")
            cached = _Together(
                self.detectors,
                tuple(self._index[name] for name in order),
                self._lookalikes is not None,
            )
            self._combined[order] = cached
        return cached

    def _scan_together(
        self, order: tuple[str, ...], data: bytes, known: dict[tuple[int, int, int], Found]
    ) -> tuple[list[tuple[int, int, int]], int]:
        """One left-to-right pass of the combined pattern: the fast way for ordinary text.

        Stops at the first candidate refused, or confirmed but perhaps hiding more (see
        :func:`_may_hide_more`), as it may hide a value of another detector that overlaps it,
        which only detector-by-detector scanning sees: returns what was found before it and
        where it starts (-1 when nothing was).
        """
        together = self.together(order)
        match = together.find._regexp.Match  # (a call less per candidate than _Pattern.search)
        found: list[tuple[int, int, int]] = []
        position = 0
        end = len(data)
        while position <= end:
            start, stop = match(_UNANCHORED, data, position, end)[0]
            if start < 0:
                return found, -1
            hit, stop = self._candidate(together, data, start, stop, known)
            if hit is None or (hit and _may_hide_more(data, start, stop, hit)):
                return found, start
            found.extend(hit)
            if hit and hit[0][2] > 0 and hit[0][0] > start:
                # The winner took the character before the value (RE2 has no lookbehind), so a
                # detector listed earlier that matches the value itself lost the leftmost race
                # by one character: it names the span. Looked for from the winner's start, then
                # from the value's ("no.001-01-0001" is an SSN after its "."; "see 943 476 5919"
                # a custom detector's after "see "), and one character on, which a
                # digit-bounded pattern reads after its value.
                better = self.together(order[: hit[0][2]])
                for origin in (start, hit[0][0]):
                    begin, finish = better.find.search_within(data, origin, min(end, stop + 1))
                    if begin < 0:
                        continue
                    confirmed = self._candidate(better, data, begin, finish, known)[0]
                    if confirmed:
                        found.extend(confirmed)
                        break
            position = stop if stop > start else stop + 1
        return found, -1

    def _candidate(
        self,
        together: _Together,
        data: bytes,
        start: int,
        stop: int,
        known: dict[tuple[int, int, int], Found],
    ) -> tuple[list[tuple[int, int, int]] | None, int]:
        """The confirmed values of the candidate ``data[start:stop]`` (None when refused), and
        where the candidate ends (a digit-bounded one read a character after its value)."""
        # Each member the candidate is a whole match of, best first: a refusal by one (an
        # NHS-shaped number without the word NHS) is no refusal while another confirms it (a
        # personnummer).
        members = len(together.members)
        # The ranks of the members that match the candidate whole, best first.
        ranks: list[int] = together.exact.Match(data[start:stop])
        ranks.sort()
        for rank in ranks:
            if rank >= members:  # no detector confirmed it: a harmless look-alike, read whole?
                finish = LOOKALIKES[rank - members].end(data, start, stop)
                if finish >= 0:
                    return [], finish
                continue
            index = together.members[rank]
            detector = self.detectors[index]
            finish = detector.value_end(data, start, stop)
            if detector.confirm is None:
                return [(start, finish, rank)], finish
            confirmed = known[index, start, finish] = detector.confirm(data, start, finish)
            if confirmed:
                return [(begin, end, rank) for begin, end in confirmed], finish
        # Refused by all, or it matched only in its context: let the careful scan decide.
        return None, stop

    def _scan_each(
        self,
        members: tuple[int, ...],
        data: bytes,
        known: dict[tuple[int, int, int], Found],
        begin: int = 0,
    ) -> list[tuple[int, int, int]]:
        """Every detector on its own, each left to right from ``begin``: linear, and nothing
        hides anything (what the combined pass confirmed or refused is not confirmed again)."""
        hits = set(self._set.Match(data[begin:] if begin else data))
        found: list[tuple[int, int, int]] = []
        for rank, index in enumerate(members):
            if index in hits:
                found.extend(
                    (start, end, rank) for start, end in self._found(index, data, known, begin)
                )
        return found


# The longest a look-alike token runs (a labelled ISBN-13 with its separators, and what the
# pattern reads around it), so the one holding a candidate starts within this many bytes before.
_LOOKALIKE_REACH = 64


_DIGIT = re.compile(rb"[0-9]")
# What may continue a value into the next one: a letter or digit, or separators then a digit.
_RUNS_ON = re.compile(rb"[0-9A-Za-z]|[ \t\r\n.\-/_]{1,3}[0-9]")


def _may_hide_more(data: bytes, start: int, stop: int, hit: list[tuple[int, int, int]]) -> bool:
    """Whether the candidate ``data[start:stop]``, confirmed as ``hit``, may hide a value of
    another detector: digits outside the values confirmed in it ("4111 1111 1111 1111
    457-10-9562" is one run of digit groups to the card pattern), or a last value that runs on
    into more text a value could be made of (a phone number ending in the first digits of a
    DNI). Values read whole on their own are scanned past; these are read detector by detector.
    """
    last = hit[-1][1]
    if _RUNS_ON.match(data, last) is not None:
        return True
    if len(hit) == 1 and last == stop and hit[0][0] - start <= 1:
        return hit[0][0] > start and data[start] in DIGITS  # the usual: one value, whole
    position = start
    for begin, finish, _ in hit:
        if _DIGIT.search(data, position, begin) is not None:
            return True
        position = max(position, finish)
    return _DIGIT.search(data, position, stop) is not None


def _merge(found: list[tuple[int, int, int]], order: Sequence[str]) -> list[Span]:
    """Overlapping hits become one span, named by the longest hit (the first ranked of equals).

    An IBAN whose tail also looks like a phone number is masked whole, as ``[iban]``.
    """
    found.sort()
    if all(found[i][1] <= found[i + 1][0] for i in range(len(found) - 1)):
        # No two overlap (the usual): each hit is its own span.
        return [_TUPLE(Span, (start, end, order[rank])) for start, end, rank in found]
    merged: list[list[int]] = []  # start, end, rank of the namer, length of the namer
    for start, end, rank in found:
        length = end - start
        if merged and start < merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], end)
            if length > last[3] or (length == last[3] and rank < last[2]):
                last[2], last[3] = rank, length
            continue
        merged.append([start, end, rank, length])
    return [Span(start, end, order[rank]) for start, end, rank, _ in merged]


def _to_characters(data: bytes, spans: list[Span]) -> list[Span]:
    """Byte offsets to character offsets, in one pass over sorted, disjoint spans."""
    converted: list[Span] = []
    characters = 0
    last = 0
    for span in spans:
        characters += len(data[last : span.start].decode("utf-8", "replace"))
        start = characters
        characters += len(data[span.start : span.end].decode("utf-8", "replace"))
        converted.append(Span(start, characters, span.detector))
        last = span.end
    return converted
