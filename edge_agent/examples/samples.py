"""Sample claim documents (fake people, fake numbers) and, now and then, a health record sent by
mistake. Deterministic for a given seed, so runs can be compared."""

from __future__ import annotations

import random
from typing import Any

FIRST = ("Jane", "Amir", "Sofia", "Liam", "Chloe", "Mateo", "Ines", "Noah", "Aisha", "Oskar")
LAST = ("Doe", "Okafor", "Lindqvist", "Moreau", "Brennan", "Kowalski", "Tanaka", "Silva")
CARS = (
    ("Volvo", "V60"),
    ("Ford", "Focus"),
    ("Toyota", "Corolla"),
    ("Kia", "Niro"),
    ("BMW", "320d"),
)
PLACES = ("car park, Leeds", "ring road, Lyon", "high street, Cork", "motorway A4, Bath")
EVENTS = (
    "Rear bumper and tail light damaged while parked.",
    "Another car reversed into the driver's door and wing mirror.",
    "Hail cracked the windscreen and dented the bonnet and roof.",
    "Hit a pothole; front wheel and tyre destroyed, radiator leaking.",
    "Low-speed collision at a junction; headlight and bumper broken, driver has whiplash.",
)


def claim(number: int, rng: random.Random) -> dict[str, Any]:
    """One claim with a name, an SSN, a policy number, and contact details inside the notes."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    make, model = rng.choice(CARS)
    amount = round(rng.uniform(400, 24_000), 2)
    day = rng.randint(1, 27)
    ssn = f"{rng.randint(100, 665):03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"
    phone = f"+44 20 7946 {rng.randint(0, 9999):04d}"
    email = f"{first}.{last}{number}@example.com".lower()
    event = rng.choice(EVENTS)
    police = " Police attended." if rng.random() < 0.3 else ""
    return {
        "claim_id": f"CLM-2026-{number:06d}",
        "policy_number": f"PN-{rng.randint(10_000_000, 99_999_999)}",
        "submitted": f"2026-11-{day + 1:02d}T09:00:00Z",
        "claimant": {"name": f"{first} {last}", "ssn": ssn, "date_of_birth": "1984-02-29"},
        "vehicle": {"make": make, "model": model, "year": rng.randint(2012, 2026)},
        "incident": {
            "date": f"2026-11-{day:02d}",
            "location": rng.choice(PLACES),
            "amount_claimed": amount,
        },
        "notes": (
            f"{event}{police} Happened on {day} November 2026. Garage estimate £{amount:,.2f}. "
            f"Claimant can be reached on {phone} or {email} after 5pm."
        ),
    }


def health_record(number: int, rng: random.Random) -> dict[str, Any]:
    """A medical report attached to a claim: must never leave the site."""
    return {
        "claim_id": f"CLM-2026-{number:06d}",
        "patient": {"name": f"{rng.choice(FIRST)} {rng.choice(LAST)}"},
        "diagnosis": "cervical strain (whiplash)",
        "hospital": "St Example's",
    }
