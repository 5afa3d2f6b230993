"""The claims scenario in the cloud: a document parser and a triage scorer.

The parser (``docs.parse``) extracts structured fields from the redacted claim: dates, amounts,
the vehicle, the damaged parts and a damage description, whether anyone was hurt and whether the
police were called. It never sees the claimant's SSN (dropped on-prem), name (a :class:`Token`,
returned unchanged so the site can re-identify it) or contact details (masked). The triage scorer
(``claims.triage``) turns those fields and the on-prem fraud check into a priority and a route.

Run both against the cloud NATS::

    python -m cloud_agent.examples.claims --nats nats://127.0.0.1:4223
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

from bridge.natsconnect import NatsIdentity, add_identity_arguments, identity_from
from cloud_agent import CloudAgent, CloudAgentUnavailable, CloudRequest

_ISO_DATE = re.compile(r"\b(20\d\d-[01]\d-[0-3]\d)\b")
_WORD_DATE = re.compile(
    r"\b([0-3]?\d) (January|February|March|April|May|June|July|August|September|October|"
    r"November|December) (20\d\d)\b"
)
_AMOUNT = re.compile(
    r"(?:£|€|\$|GBP ?|EUR ?|USD ?)(\d{1,3}(?:,\d{3})*(?:\.\d{2})?|\d+(?:\.\d{2})?)"
)
_PLATE = re.compile(r"\b([A-Z]{2}\d{2} ?[A-Z]{3})\b")
PARTS = (
    "bumper", "tail light", "headlight", "windscreen", "bonnet", "door", "wing mirror",
    "wheel", "tyre", "boot", "roof", "radiator", "airbag", "exhaust",
)  # fmt: skip
MAKES = (
    "Volvo",
    "Ford",
    "Toyota",
    "Volkswagen",
    "BMW",
    "Audi",
    "Renault",
    "Peugeot",
    "Tesla",
    "Kia",
)
_MONTHS = {m: i for i, m in enumerate(
    ("January", "February", "March", "April", "May", "June", "July", "August", "September",
     "October", "November", "December"), start=1)}  # fmt: skip


def extract(document: dict[str, Any]) -> dict[str, Any]:
    """Structured fields from a claim document (its notes and its structured parts)."""
    notes = str(document.get("notes", ""))
    incident = document.get("incident") or {}
    vehicle = dict(document.get("vehicle") or {})
    dates = set(_ISO_DATE.findall(notes))
    dates.update(f"{y}-{_MONTHS[m]:02d}-{int(d):02d}" for d, m, y in _WORD_DATE.findall(notes))
    if incident.get("date"):
        dates.add(str(incident["date"]))
    amounts = [float(a.replace(",", "")) for a in _AMOUNT.findall(notes)]
    if incident.get("amount_claimed") is not None:
        amounts.append(float(incident["amount_claimed"]))
    lowered = notes.lower()
    parts = [part for part in PARTS if part in lowered]
    if not vehicle.get("make"):
        vehicle["make"] = next((make for make in MAKES if make.lower() in lowered), None)
    plate = _PLATE.search(notes)
    if plate and not vehicle.get("registration"):
        vehicle["registration"] = plate.group(1)
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", notes) if s.strip()]
    damage = next((s for s in sentences if any(p in s.lower() for p in parts)), None)
    return {
        "claim_id": document.get("claim_id"),
        "dates": sorted(dates),
        "incident_date": incident.get("date") or (sorted(dates)[0] if dates else None),
        "amount": max(amounts) if amounts else None,
        "vehicle": vehicle,
        "damaged_parts": parts,
        "damage_description": damage,
        "injury": any(w in lowered for w in ("injur", "whiplash", "hospital", "ambulance")),
        "police_report": "police" in lowered,
        "location": incident.get("location"),
    }


def triage(fields: dict[str, Any], fraud: dict[str, Any]) -> dict[str, Any]:
    """A priority and a route from the parsed fields and the on-prem fraud check."""
    amount = float(fields.get("amount") or 0)
    score = min(amount / 20_000, 1.0) * 0.4
    score += 0.3 if fields.get("injury") else 0.0
    score += 0.05 * len(fields.get("damaged_parts") or ())
    fraud_score = float(fraud.get("score", 0))
    if fraud_score >= 0.7:
        route = "special-investigation"
    elif fields.get("injury") or amount > 10_000:
        route = "senior-adjuster"
    elif amount < 3_000 and not fraud.get("flags"):
        route = "fast-track"
    else:
        route = "adjuster"
    score = round(min(score + 0.3 * fraud_score, 1.0), 2)
    priority = "high" if score >= 0.6 else "normal" if score >= 0.25 else "low"
    return {"score": score, "priority": priority, "route": route}


def claims_agents(nats_url: str, **options: Any) -> tuple[CloudAgent, CloudAgent]:
    """The parser and the triage scorer, ready to start."""
    parser = CloudAgent("document-parser", nats_url=nats_url, **options)
    scorer = CloudAgent("triage-scorer", nats_url=nats_url, **options)

    @parser.capability("docs.parse")
    async def parse(request: CloudRequest) -> dict[str, Any]:
        document = request.payload
        # The claimant's name is a Token: returned as it is, re-identified on-prem.
        return {"claimant": document.get("claimant", {}), "fields": extract(document)}

    @scorer.capability("claims.triage")
    async def score(request: CloudRequest) -> dict[str, Any]:
        document = request.payload
        return triage(document.get("fields") or {}, document.get("fraud") or {})

    return parser, scorer


async def main(identity: NatsIdentity) -> None:
    parser, scorer = claims_agents(
        identity.url, nkey_seed=identity.nkey_seed, credentials=identity.credentials
    )
    await scorer.start()
    try:
        await parser.run()
    finally:
        await scorer.stop()


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_identity_arguments(arguments)  # --nats, --nkey, --creds (or RBRIDGE_AGENT_…)
    try:
        asyncio.run(main(identity_from(arguments.parse_args())))
    except CloudAgentUnavailable as error:
        raise SystemExit(f"cloud claims agents: {error}") from None
