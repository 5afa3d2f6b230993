"""Loops that lose what they depend on come back, and say so while they are down."""

from __future__ import annotations

import random

import nats
from nats.js.errors import NotFoundError

from edge_agent import Agent
from edge_agent.examples.samples import claim
from tests.eventually import eventually
from tests.runtime.world import World


async def test_every_consumer_deleted_under_a_running_bridge_comes_back(world: World) -> None:
    """The edge's consumer on RB_OUT, the gateway's reply consumer and the cloud agent's
    consumer are deleted while the bridge runs (an operator's mistake, a server that lost its
    state): each loop notices, makes its consumer again, and the next request is answered."""
    _, edge = await world.start_linked()
    agent = world.parser()
    await agent.start()
    rng = random.Random(10)
    try:
        async with Agent("desk", nats_url=world.edge_nats.url) as desk:
            first = claim(1, rng)
            assert (await desk.ask_cloud("docs.parse", first, timeout=30))["claim_id"] == (
                first["claim_id"]
            )
            consumers = (
                (world.edge_nats.url, "RB_OUT", "rbridge-edge"),
                (world.cloud_nats.url, "RB_REPLY", "reply-plant-a"),
                (world.cloud_nats.url, "RB_IN", "parser-docs_parse"),
            )
            for url, stream, durable in consumers:
                client = await nats.connect(url)
                try:
                    await client.jetstream().delete_consumer(stream, durable)
                finally:
                    await client.close()

            # Each loop notices, says so, and makes its consumer again. (What is published to
            # an interest stream while none of its consumers exists is not kept: deleting a
            # consumer the bridge uses loses what it alone held. So the test waits.)
            async def all_back() -> bool:
                for url, stream, durable in consumers:
                    client = await nats.connect(url)
                    try:
                        await client.jetstream().consumer_info(stream, durable)
                    except NotFoundError:
                        return False
                    finally:
                        await client.close()
                return True

            await eventually(all_back, "the three consumers made again", timeout=60)
            assert edge.loops.restarts()["pull"] >= 1
            second = claim(2, rng)
            answer = await desk.ask_cloud("docs.parse", second, timeout=90)
            assert answer["claim_id"] == second["claim_id"]
    finally:
        await agent.stop()
