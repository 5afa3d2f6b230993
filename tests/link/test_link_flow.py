"""The link carrying envelopes both ways over real mTLS gRPC on loopback."""

from __future__ import annotations

from tests.link.helpers import Pki, Recorder, Results, edge_link, envelope, start_gateway


async def test_envelopes_cross_in_batches_and_every_one_is_acked_once(pki: Pki) -> None:
    """1000 envelopes: all stored by the gateway in order, each acked exactly once at the edge."""
    recorder, results = Recorder(), Results()
    gateway = await start_gateway(pki, recorder)
    link = edge_link(pki, gateway.port, results)
    await link.start()
    await link.wait_up(10)
    for number in range(1000):
        await link.send(envelope(number))
    await results.wait_for(1000)
    assert set(results.acked) == {f"id-{n}" for n in range(1000)}
    assert max(results.acked.values()) == 1
    assert recorder.ids() == [f"id-{n}" for n in range(1000)]
    assert recorder.batches < 1000 / 4, "envelopes should travel in batches"
    first = recorder.received[0][1]
    assert (first.capability, first.classification, first.rule, first.policy_revision) == (
        "docs.parse",
        "internal",
        "rule",
        7,
    )
    assert link.state == "up"
    assert await link.stop(2) == 0
    await gateway.stop(1)
