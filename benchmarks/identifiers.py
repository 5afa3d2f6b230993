"""Valid (and deliberately invalid) identifiers of every type the detectors know, from a seeded
random source: for the detection benchmark and the detectors' property tests.

Each generator follows the published rule of its type (check digits, ranges, letters); the
``invalid_*`` ones break exactly that rule, so a detector that checks it must refuse them.
"""

from __future__ import annotations

import base64
import random
import string

LETTERS = string.ascii_uppercase


def luhn_digit(body: str) -> str:
    """The Luhn check digit to append to ``body``."""
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


def isbn13(rng: random.Random) -> str:
    """An ISBN-13 (978 prefix) with its GS1 check digit, ungrouped."""
    body = "978" + digits(rng, 9)
    check = (10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body)) % 10) % 10
    return f"{body}{check}"


# --- US social security numbers ---------------------------------------------------------


def us_ssn(rng: random.Random) -> str:
    area = rng.choice([rng.randint(1, 99), rng.randint(100, 665), rng.randint(667, 899)])
    separator = rng.choice(["-", "-", " "])
    return f"{area:03d}{separator}{rng.randint(1, 99):02d}{separator}{rng.randint(1, 9999):04d}"


# --- payment cards: (brand, prefixes, lengths) --------------------------------------------

CARD_BRANDS: tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("visa", ("4",), (13, 16, 19)),
    ("mastercard", ("51", "52", "53", "54", "55", "2221", "2500", "2720"), (16,)),
    ("amex", ("34", "37"), (15,)),
    ("discover", ("6011", "644", "65"), (16, 19)),
    ("jcb", ("3528", "3550", "3589"), (16, 17, 18, 19)),
    ("maestro", ("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6763"), (12, 13, 16, 19)),
    ("unionpay", ("62",), (16, 17, 18, 19)),
    ("diners", ("36", "38"), (14,)),
)


def card_number(rng: random.Random, brand: str | None = None) -> str:
    name, prefixes, lengths = (
        rng.choice(CARD_BRANDS) if brand is None else next(b for b in CARD_BRANDS if b[0] == brand)
    )
    prefix = rng.choice(prefixes)
    length = rng.choice(lengths)
    body = prefix + digits(rng, length - len(prefix) - 1)
    number = body + luhn_digit(body)
    style = rng.choice(["plain", "spaced", "dashed"])
    if style == "plain":
        return number
    separator = " " if style == "spaced" else "-"
    if name == "amex":
        return separator.join([number[:4], number[4:10], number[10:]])
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


# --- IBANs --------------------------------------------------------------------------------

IBAN_FORMATS = {  # country: BBAN as (kind, count) runs; n digits, a upper letters, c alphanum
    "DE": (("n", 18),),
    "FR": (("n", 10), ("c", 11), ("n", 2)),
    "GB": (("a", 4), ("n", 14)),
    "IT": (("a", 1), ("n", 10), ("c", 12)),
    "NL": (("a", 4), ("n", 10)),
    "AT": (("n", 16),),
}


def iban(rng: random.Random, country: str | None = None) -> str:
    country = country or rng.choice(sorted(IBAN_FORMATS))
    alphabet = {"n": string.digits, "a": LETTERS, "c": string.digits + LETTERS}
    bban = "".join(
        rng.choice(alphabet[kind]) for kind, count in IBAN_FORMATS[country] for _ in range(count)
    )
    number = int("".join(str(int(char, 36)) for char in bban + country + "00"))
    compact = f"{country}{98 - number % 97:02d}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


# --- European national identifiers --------------------------------------------------------

_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"  # not O in the second place
_NINO_BAD_PREFIXES = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def uk_nino(rng: random.Random) -> str:
    while (prefix := rng.choice(_NINO_FIRST) + rng.choice(_NINO_SECOND)) in _NINO_BAD_PREFIXES:
        pass
    body = digits(rng, 6)
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{prefix}{body}{suffix}"
    return f"{prefix} {body[:2]} {body[2:4]} {body[4:]} {suffix}"


def _nhs_check(body: str) -> int:
    total = sum(int(char) * (10 - position) for position, char in enumerate(body))
    return (11 - total % 11) % 11


def uk_nhs(rng: random.Random) -> str:
    while True:
        body = str(rng.randint(1, 9)) + digits(rng, 8)
        check = _nhs_check(body)
        if check != 10:
            number = body + str(check)
            return f"{number[:3]} {number[3:6]} {number[6:]}" if rng.random() < 0.6 else number


def invalid_uk_nhs(rng: random.Random) -> str:
    number = uk_nhs(rng).replace(" ", "")
    return number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)


def _steuer_check(body: str) -> int:
    product = 10
    for char in body:
        total = (int(char) + product) % 10 or 10
        product = (total * 2) % 11
    return (11 - product) % 10


def de_tax_id(rng: random.Random) -> str:
    """Steuer-ID: 11 digits, first not 0; in the first ten one digit twice (or thrice), one
    missing; ISO 7064 MOD 11,10 check digit."""
    while True:
        pool = rng.sample(string.digits, 9)
        body_digits = [*pool, rng.choice(pool)]
        rng.shuffle(body_digits)
        body = "".join(body_digits)
        if body[0] == "0":
            continue
        number = body + str(_steuer_check(body))
        if rng.random() < 0.5:
            return number
        return f"{number[:2]} {number[2:5]} {number[5:8]} {number[8:]}"


def fr_nir(rng: random.Random) -> str:
    sex = rng.choice("12")
    year = f"{rng.randint(0, 99):02d}"
    month = f"{rng.randint(1, 12):02d}"
    department = f"{rng.randint(1, 95):02d}"
    commune = f"{rng.randint(1, 990):03d}"
    order = f"{rng.randint(1, 999):03d}"
    body = sex + year + month + department + commune + order
    key = 97 - int(body) % 97
    if rng.random() < 0.5:
        return f"{body}{key:02d}"
    return f"{sex} {year} {month} {department} {commune} {order} {key:02d}"


_CF_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]  # fmt: skip
_CF_MONTHS = "ABCDEHLMPRST"


def _cf_value(char: str, odd: bool) -> int:
    index = int(char) if char.isdigit() else ord(char) - 65
    return _CF_ODD[index] if odd else index


def it_fiscal_code(rng: random.Random) -> str:
    letters = "".join(rng.choice(LETTERS) for _ in range(6))
    day = rng.randint(1, 28) + rng.choice([0, 40])  # 41-68: a woman's day of birth
    body = (
        f"{letters}{rng.randint(0, 99):02d}{rng.choice(_CF_MONTHS)}{day:02d}"
        f"{rng.choice(LETTERS)}{rng.randint(1, 999):03d}"
    )
    check = sum(_cf_value(char, position % 2 == 0) for position, char in enumerate(body)) % 26
    return body + LETTERS[check]


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def es_dni(rng: random.Random) -> str:
    number = rng.randint(0, 99999999)
    return f"{number:08d}{_DNI_LETTERS[number % 23]}"


def es_nie(rng: random.Random) -> str:
    first = rng.choice("XYZ")
    number = rng.randint(0, 9999999)
    value = int(f"{'XYZ'.index(first)}{number:07d}")
    return f"{first}{number:07d}{_DNI_LETTERS[value % 23]}"


def nl_bsn(rng: random.Random) -> str:
    while True:
        body = digits(rng, 8)
        total = sum(int(char) * (9 - position) for position, char in enumerate(body))
        last = total % 11  # the 11-proof: the weighted sum minus the last digit is 0 mod 11
        if last <= 9:
            return body + str(last)


def se_personnummer(rng: random.Random) -> str:
    body = f"{rng.randint(0, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    serial = digits(rng, 3)
    check = luhn_digit(body + serial)
    separator = rng.choice(["-", "-", "+"]) if rng.random() < 0.8 else ""
    if rng.random() < 0.3:
        return f"{rng.choice(['19', '20'])}{body}{separator}{serial}{check}"
    return f"{body}{separator}{serial}{check}"


def passport_number(rng: random.Random) -> str:
    """US/UK: nine digits; Germany: C, F, G, H, J, K then eight of digits and letters; France:
    two digits, two letters, five digits."""
    style = rng.choice(["digits", "de", "fr"])
    if style == "digits":
        return digits(rng, 9)
    if style == "de":
        return (
            rng.choice("CFGHJK")
            + "".join(rng.choice("0123456789CFGHJKLMNPRTVWXYZ") for _ in range(7))
            + digits(rng, 1)
        )
    return digits(rng, 2) + "".join(rng.choice(LETTERS) for _ in range(2)) + digits(rng, 5)


# --- secrets ----------------------------------------------------------------------------


def pem_private_key(rng: random.Random) -> str:
    kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    body = base64.b64encode(rng.randbytes(rng.randint(90, 300))).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}-----\n{lines}\n-----END {kind}-----"


def aws_access_key(rng: random.Random) -> str:
    return rng.choice(["AKIA", "ASIA"]) + "".join(rng.choice(LETTERS + "234567") for _ in range(16))


def jwt(rng: random.Random) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    header = part(b'{"alg":"HS256","typ":"JWT"}')
    claims = part(b'{"sub":"%d","iat":%d}' % (rng.randint(1, 10**9), rng.randint(10**9, 2 * 10**9)))
    return f"{header}.{claims}.{part(rng.randbytes(32))}"


def api_key_assignment(rng: random.Random) -> str:
    name = rng.choice(["api_key", "apikey", "API_KEY", "secret", "access_token", "client_secret"])
    value = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(32))
    return rng.choice([f"{name}={value}", f'{name}: "{value}"', f"{name} = '{value}'"])
