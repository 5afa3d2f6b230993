"""A destination with standby gateways: the edge moves to the next one when the one in use
cannot be reached or goes away, and nothing sent is lost or acked twice."""

from __future__ import annotations

from bridge.up.ports import free_port
from tests.link.helpers import Pki, Recorder, Results, edge_link, envelope, start_gateway


async def test_an_unreachable_first_gateway_is_passed_over(pki: Pki) -> None:
    pki.site("plant-a")
    recorder, results = Recorder(), Results()
    standby = await start_gateway(pki, recorder)
    link = edge_link(pki, free_port(), results, standby=[standby.port])
    await link.start()
    await link.wait_up(20)
    assert link.target == f"localhost:{standby.port}"
    for number in range(50):
        await link.send(envelope(number))
    await results.wait_for(50)
    assert len(recorder.ids()) == 50


async def test_the_edge_moves_to_the_standby_when_its_gateway_stops(pki: Pki) -> None:
    pki.site("plant-a")
    first_store, second_store, results = Recorder(), Recorder(), Results()
    first = await start_gateway(pki, first_store)
    second = await start_gateway(pki, second_store)
    link = edge_link(pki, first.port, results, standby=[second.port])
    await link.start()
    await link.wait_up(20)
    for number in range(100):
        await link.send(envelope(number))
    await results.wait_for(100)
    first_store.open.clear()  # the next envelopes are taken but never stored by the first
    for number in range(100, 200):
        await link.send(envelope(number))
    await first.stop(0)
    await results.wait_for(200, timeout=60)
    assert link.target == f"localhost:{second.port}"
    assert max(results.acked.values()) == 1
    assert set(results.acked) == {f"id-{n}" for n in range(200)}
    stored = first_store.ids() + second_store.ids()
    assert set(stored) == {f"id-{n}" for n in range(200)}
    assert second_store.ids(), "the standby took what the first gateway left unanswered"
