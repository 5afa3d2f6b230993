"""What an operator sees when the configuration on the two sides disagrees."""

from __future__ import annotations

import logging

import pytest

from edge_agent import Agent, Denied
from tests.runtime.world import World


async def test_a_revision_below_the_gateways_minimum_is_explained_everywhere(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent's Denied, the edge's log and the gateway's log all name both revisions, and
    the gateway warns as soon as the site connects."""
    caplog.set_level(logging.WARNING)
    policy = world.root / "policy" / "claims.yaml"
    policy.write_text(policy.read_text().replace("revision: 7", "revision: 1", 1))
    await world.start_gateway()  # minimum revision 5
    edge = await world.start_edge()
    await edge.links["cloud-eu"].wait_up(10)
    async with Agent("front-desk", nats_url=world.edge_nats.url) as desk:
        with pytest.raises(Denied) as caught:
            await desk.ask_cloud("docs.parse", {"claim_id": "C-1"}, timeout=20)
    denied = caught.value
    assert denied.reason == "cloud:revision-refused"
    assert "policy revision 1 is older than the gateway's minimum 5" in denied.detail
    assert "revision 1 is older than the gateway's minimum 5" in str(denied)
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        "runs policy revision 1, below this gateway's minimum 5" in line for line in messages
    ), messages
    assert any("revision-refused (policy revision 1 is older" in line for line in messages)
