"""The claims scenario on-prem: a claims intake agent and a local fraud-check agent.

Claims intake receives a claim document with the claimant's personal data on ``claims.intake``,
and delegates at once to the on-prem fraud check (``claims.fraud.check``, never leaves the site)
and to the cloud document parser (``docs.parse``, through the bridge: the SSN is dropped, the
name tokenized, the policy number hashed, contact details in the notes masked). It then asks the
cloud triage scorer (``claims.triage``) and answers with the parsed fields, the claimant's name
(re-identified on-prem from the parser's reply), the fraud check and the triage.

Run both agents against a local NATS::

    python -m edge_agent.examples.claims --nats nats://127.0.0.1:4222 --nkey /etc/rbridge/nkeys/agents.nk
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

from bridge.natsconnect import NatsIdentity, add_identity_arguments, identity_from
from edge_agent import Agent, Request, Unavailable

#: Claims above this amount get a closer look.
LARGE_CLAIM = 15_000.0
#: More claims than this on one policy number within the window is unusual.
REPEAT_CLAIMS = 2


def fraud_agent(nats_url: str, **options: Any) -> Agent:
    """Local fraud rules on the full claim (personal data included); nothing here leaves."""
    agent = Agent("fraud-check", nats_url=nats_url, **options)
    seen: Counter[str] = Counter()

    @agent.handle("claims.fraud.check")
    async def check(request: Request) -> dict[str, Any]:
        claim = request.json()
        flags = []
        amount = float(claim.get("incident", {}).get("amount_claimed", 0))
        if amount > LARGE_CLAIM:
            flags.append("large-amount")
        policy = str(claim.get("policy_number", ""))
        seen[policy] += 1
        if seen[policy] > REPEAT_CLAIMS:
            flags.append("repeat-claims-on-policy")
        submitted, incident = claim.get("submitted", ""), claim.get("incident", {}).get("date", "")
        if submitted[:10] and incident and submitted[:10] < incident:
            flags.append("incident-after-submission")
        score = min(1.0, 0.35 * len(flags))
        return {"score": round(score, 2), "flags": flags}

    return agent


def intake_agent(nats_url: str, *, cloud_timeout: float = 30.0, **options: Any) -> Agent:
    """Takes claims, fans out to the fraud check and the cloud parser, then to triage."""
    agent = Agent("claims-intake", nats_url=nats_url, **options)

    @agent.handle("claims.intake")
    async def intake(request: Request) -> dict[str, Any]:
        claim = request.json()
        started = time.monotonic()
        fraud, parsed = await asyncio.gather(
            agent.ask("claims.fraud.check", claim, timeout=cloud_timeout),
            agent.ask_cloud("docs.parse", claim, timeout=cloud_timeout),
        )
        triage = await agent.ask_cloud(
            "claims.triage",
            {
                "claim_id": claim["claim_id"],
                "policy_number": claim["policy_number"],
                "fields": parsed["fields"],
                "fraud": fraud,
            },
            timeout=cloud_timeout,
        )
        return {
            "claim_id": claim["claim_id"],
            "claimant": parsed["claimant"],
            "fields": parsed["fields"],
            "fraud": fraud,
            "triage": triage,
            "seconds": round(time.monotonic() - started, 3),
        }

    return agent


async def main(identity: NatsIdentity) -> None:
    fraud = fraud_agent(
        identity.url, nkey_seed=identity.nkey_seed, credentials=identity.credentials
    )
    intake = intake_agent(
        identity.url, nkey_seed=identity.nkey_seed, credentials=identity.credentials
    )
    await fraud.start()
    try:
        await intake.run()
    finally:
        await fraud.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_identity_arguments(parser)  # --nats, --nkey, --creds (or RBRIDGE_AGENT_…)
    try:
        asyncio.run(main(identity_from(parser.parse_args())))
    except Unavailable as error:
        raise SystemExit(f"claims agents: {error}") from None
