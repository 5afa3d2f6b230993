"""National identifiers and secrets: the checks behind their detectors.

Each ``confirm_*`` takes the UTF-8 text and a candidate's span (from the detector's RE2
pattern) and returns the spans of the values that pass their published rule: a check digit or
letter, a range, or, where a number alone is too common (a Dutch BSN is any nine digits passing
an 11-proof: one in eleven), a context word shortly before it.
"""

from __future__ import annotations

import base64
import binascii
import re

from bridge.policy.candidates import DIGITS, Found, digit_at

_CONTEXT_BEFORE = 40


def _compact(value: bytes) -> str:
    return value.decode("ascii", "replace").replace(" ", "").replace("-", "").replace(".", "")


def _near(data: bytes, start: int, words: re.Pattern[bytes]) -> bool:
    return words.search(data, max(0, start - _CONTEXT_BEFORE), start) is not None


def _bounded(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The candidate without a leading non-digit, None if digits run on at either end."""
    if not digit_at(data, start):
        start += 1
    if digit_at(data, start - 1) or digit_at(data, end):
        return None
    return start, end


# --- UK -------------------------------------------------------------------------------------

_NINO_BAD_PREFIXES = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def confirm_uk_nino(data: bytes, start: int, end: int) -> Found:
    """National Insurance number: two prefix letters (D, F, I, Q, U, V never; O not second;
    BG, GB, KN, NK, NT, TN, ZZ not allocated), six digits, suffix A-D."""
    compact = _compact(data[start:end]).upper()
    if compact[:2] in _NINO_BAD_PREFIXES:
        return []
    return [(start, end)]


_NHS_WORDS = re.compile(rb"(?i)nhs|health (?:service|and care)|chi number")


def confirm_uk_nhs(data: bytes, start: int, end: int) -> Found:
    """NHS number: ten digits, mod-11 check digit (a remainder of 10 is never issued), with
    "NHS" shortly before it (ten digits pass the check one time in eleven)."""
    bounded = _bounded(data, start, end)
    if bounded is None:
        return []
    start, end = bounded
    number = _compact(data[start:end])
    if len(number) != 10 or not _near(data, start, _NHS_WORDS):
        return []
    total = sum(int(char) * (10 - position) for position, char in enumerate(number[:9]))
    check = (11 - total % 11) % 11
    return [(start, end)] if check != 10 and check == int(number[9]) else []


# --- Germany --------------------------------------------------------------------------------


def steuer_id_valid(number: str) -> bool:
    """Steuerliche Identifikationsnummer: 11 digits, the first not 0; in the first ten one digit
    appears twice or three times and the others at most once; ISO 7064 MOD 11,10 check."""
    if len(number) != 11 or not number.isdigit() or number[0] == "0":
        return False
    counts = sorted((number[:10].count(d) for d in set(number[:10])), reverse=True)
    if counts[0] not in (2, 3) or any(c > 1 for c in counts[1:]):
        return False
    product = 10
    for char in number[:10]:
        total = (int(char) + product) % 10 or 10
        product = (total * 2) % 11
    return (11 - product) % 10 == int(number[10])


def confirm_de_tax_id(data: bytes, start: int, end: int) -> Found:
    bounded = _bounded(data, start, end)
    if bounded is None or (bounded[0] > 0 and data[bounded[0] - 1] == 0x2B):  # "+49…": a phone
        return []
    start, end = bounded
    return [(start, end)] if steuer_id_valid(_compact(data[start:end])) else []


# --- France ---------------------------------------------------------------------------------


def confirm_fr_nir(data: bytes, start: int, end: int) -> Found:
    """NIR (numéro de sécurité sociale): sex, year, month, department (2A/2B for Corsica),
    commune, order, and a key of 97 minus the 13-digit number mod 97."""
    bounded = _bounded(data, start, end)
    if bounded is None:
        return []
    start, end = bounded
    compact = _compact(data[start:end]).upper()
    if len(compact) != 15:
        return []
    body = compact[:13].replace("2A", "19", 1) if compact[5:7] == "2A" else compact[:13]
    body = body.replace("2B", "18", 1) if compact[5:7] == "2B" else body
    if not body.isdigit() or not compact[13:].isdigit():
        return []
    month = int(compact[3:5])
    if not (1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99):
        return []
    return [(start, end)] if 97 - int(body) % 97 == int(compact[13:]) else []


# --- Italy ----------------------------------------------------------------------------------

_CF_ODD = (1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23)  # fmt: skip
_CF_OMOCODE = str.maketrans("LMNPQRSTUV", "0123456789")


def confirm_it_fiscal_code(data: bytes, start: int, end: int) -> Found:
    """Codice fiscale: 15 characters (digits maybe replaced by letters for homocodes) and a
    check letter from the odd/even tables."""
    code = data[start:end].decode("ascii", "replace").upper()
    total = 0
    for position, char in enumerate(code[:15]):
        index = int(char) if char.isdigit() else ord(char) - 65
        total += _CF_ODD[index] if position % 2 == 0 else index
    day = code[9:11].translate(_CF_OMOCODE)
    if not day.isdigit() or not (1 <= int(day) <= 31 or 41 <= int(day) <= 71):
        return []
    return [(start, end)] if chr(65 + total % 26) == code[15] else []


# --- Spain ----------------------------------------------------------------------------------

_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def confirm_es_dni(data: bytes, start: int, end: int) -> Found:
    """DNI/NIF: eight digits and the control letter (the number mod 23)."""
    bounded = _bounded(data, start, end)
    if bounded is None:
        return []
    start, end = bounded
    compact = _compact(data[start:end]).upper()
    return [(start, end)] if _DNI_LETTERS[int(compact[:8]) % 23] == compact[8] else []


def confirm_es_nie(data: bytes, start: int, end: int) -> Found:
    """NIE: X, Y or Z (as 0, 1, 2), seven digits and the control letter."""
    compact = _compact(data[start:end]).upper()
    number = str("XYZ".index(compact[0])) + compact[1:8]
    return [(start, end)] if _DNI_LETTERS[int(number) % 23] == compact[8] else []


# --- the Netherlands ------------------------------------------------------------------------

_BSN_WORDS = re.compile(rb"(?i)bsn|burgerservice|sofi")


def confirm_nl_bsn(data: bytes, start: int, end: int) -> Found:
    """BSN: nine digits passing the 11-proof, with a BSN word shortly before it."""
    bounded = _bounded(data, start, end)
    if bounded is None:
        return []
    start, end = bounded
    number = _compact(data[start:end])
    if len(number) != 9 or not _near(data, start, _BSN_WORDS):
        return []
    total = sum(int(char) * (9 - position) for position, char in enumerate(number[:8]))
    return [(start, end)] if (total - int(number[8])) % 11 == 0 else []


# --- Sweden ---------------------------------------------------------------------------------

_PNR_WORDS = re.compile(rb"(?i)personnummer|person nr|pnr|samordningsnummer")


def confirm_se_personnummer(data: bytes, start: int, end: int) -> Found:
    """Personnummer: (YY)YYMMDD, '-' or '+', three digits and a Luhn check digit over the ten;
    the day may be +60 (samordningsnummer). Without a separator, only after a context word."""
    bounded = _bounded(data, start, end)
    if bounded is None:
        return []
    start, end = bounded
    text = data[start:end].decode("ascii", "replace")
    compact = text.replace("-", "").replace("+", "")
    if len(compact) == 12:
        compact = compact[2:]
    if len(compact) != 10 or not compact.isdigit():
        return []
    if "-" not in text and "+" not in text and not _near(data, start, _PNR_WORDS):
        return []
    month, day = int(compact[2:4]), int(compact[4:6])
    if not (1 <= month <= 12 and (1 <= day <= 31 or 61 <= day <= 91)):
        return []
    total = 0
    for position, char in enumerate(compact):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return [(start, end)] if total % 10 == 0 else []


# --- passports -----------------------------------------------------------------------------

_PASSPORT_NUMBER = re.compile(rb"[A-Za-z0-9]{6,9}$")


def confirm_passport(data: bytes, start: int, end: int) -> Found:
    """A passport-like number (6-9 letters and digits, one digit at least) right after a word
    for passport: without the word, such a number is anything at all."""
    number = _PASSPORT_NUMBER.search(data, start, end)
    if number is None or not any(c in DIGITS for c in number.group()):
        return []
    return [number.span()]


# --- secrets --------------------------------------------------------------------------------


def confirm_jwt(data: bytes, start: int, end: int) -> Found:
    """A JSON Web Token: its first part decodes to a JSON header naming an algorithm."""
    header = data[start : data.index(b".", start)]
    try:
        decoded = base64.urlsafe_b64decode(header + b"=" * (-len(header) % 4))
    except (binascii.Error, ValueError):
        return []
    return [(start, end)] if b'"alg"' in decoded else []


_SECRET_VALUE = re.compile(rb"[:=]\s*[\"']?([A-Za-z0-9_\-+/=.]{16,})")


def confirm_secret_assignment(data: bytes, start: int, end: int) -> Found:
    """``api_key = …``-style assignments: a value of 16 or more characters mixing letters and
    digits (a word, a path or a placeholder such as ``<your key>`` is not a secret)."""
    match = _SECRET_VALUE.search(data, start, end)
    if match is None:
        return []
    value = match.group(1)
    has_letter = any(chr(c).isalpha() for c in value)
    has_digit = any(c in DIGITS for c in value)
    return [(start, match.end(1))] if has_letter and has_digit else []
