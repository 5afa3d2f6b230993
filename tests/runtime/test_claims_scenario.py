"""The claims scenario on the real bridge: edge agents, the policy, the link, cloud agents."""

from __future__ import annotations

import random

import pytest

from cloud_agent.examples.claims import claims_agents
from edge_agent import Agent, Denied
from edge_agent.examples.claims import fraud_agent, intake_agent
from edge_agent.examples.samples import claim, health_record
from tests.runtime.world import World


async def test_claims_are_parsed_in_the_cloud_and_come_back_named(world: World) -> None:
    """Intake → fraud check (on-prem) + parser (cloud) → triage (cloud) → the named answer."""
    await world.start_gateway(sites={"plant-a": {"capabilities": ["docs.>", "claims.>"]}})
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    url = world.edge_nats.url
    parser, scorer = claims_agents(world.cloud_nats.url)
    agents = [fraud_agent(url), intake_agent(url)]
    rng = random.Random(3)
    claims = [claim(number, rng) for number in range(12)]
    for cloud in (parser, scorer):
        await cloud.start()
    for agent in agents:
        await agent.start()
    try:
        async with Agent("front-desk", nats_url=url) as desk:
            for document in claims:
                answer = await desk.ask("claims.intake", document, timeout=30)
                # The cloud saw a token; the agent got the name back.
                assert answer["claimant"]["name"] == document["claimant"]["name"]
                assert answer["fields"]["claim_id"] == document["claim_id"]
                assert answer["fields"]["amount"] == document["incident"]["amount_claimed"]
                assert answer["triage"]["route"] in {
                    "fast-track", "adjuster", "senior-adjuster", "special-investigation"
                }  # fmt: skip
                assert "flags" in answer["fraud"]
            # A health record sent by mistake: denied at the bridge, and the sender told why.
            with pytest.raises(Denied) as denied:
                await desk.ask_cloud("docs.medical.scan", health_record(99, rng), timeout=20)
            assert denied.value.rule == "health-data-stays-home"
            assert denied.value.reason == "rule:health-data-stays-home"
    finally:
        for agent in agents:
            await agent.stop()
        for cloud in (parser, scorer):
            await cloud.stop()
    assert parser.stats.handled == len(claims)
    assert scorer.stats.handled == len(claims)
