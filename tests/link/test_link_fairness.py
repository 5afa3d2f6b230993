"""Sites share a gateway: a busy site neither starves a quiet one nor holds unbounded memory."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence

import pytest

from bridge.link import Envelope, LinkGateway, Reject, SiteIdentity
from bridge.link.gateway import Session
from bridge.link.turns import Turns
from tests.eventually import eventually
from tests.link.helpers import FAST, Pki, Recorder, Results, edge_link, envelope, start_gateway

TURN = 16


class BusyStore(Recorder):
    """A store that spends the loop's time per envelope, as the gateway's checks do, then
    waits for its answer, as a publish to JetStream does."""

    def __init__(self, per_envelope: float) -> None:
        super().__init__()
        self.per_envelope = per_envelope

    async def accept(
        self, site: SiteIdentity, envelopes: Sequence[Envelope]
    ) -> Sequence[Reject | None]:
        time.sleep(self.per_envelope * len(envelopes))  # CPU-bound work holds the loop
        await asyncio.sleep(0.001)  # a PubAck's round trip
        return await super().accept(site, envelopes)


async def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    async def check() -> bool:
        return condition()

    await eventually(check, what, timeout=timeout, every=0.005)


def _stored(recorder: Recorder, site: str) -> int:
    return sum(1 for name, _ in recorder.received if name == site)


async def test_a_quiet_site_waits_a_few_turns_not_for_a_busy_sites_backlog(pki: Pki) -> None:
    pki.site("plant-a")
    pki.site("plant-b")
    store = BusyStore(per_envelope=0.0005)
    settings = dataclasses.replace(FAST, turn_envelopes=TURN, store_slots=1)
    gateway = await start_gateway(pki, store, settings=settings)
    busy_results, quiet_results = Results(), Results()
    busy = edge_link(pki, gateway.port, busy_results, site="plant-a")
    quiet = edge_link(pki, gateway.port, quiet_results, site="plant-b")
    for link in (busy, quiet):
        await link.start()
        await link.wait_up(10)

    flood = 3000
    for number in range(flood):
        await busy.send(envelope(number))
    await until(lambda: _stored(store, "plant-a") >= 100, "the busy site's first stores")
    asked_at = _stored(store, "plant-a")
    await quiet.send(envelope(0, "docs.parse"))
    await quiet_results.wait_for(1)

    position = next(i for i, (site, _) in enumerate(store.received) if site == "plant-b")
    busy_before = sum(1 for site, _ in store.received[:position] if site == "plant-a")
    assert busy_before < flood, "the quiet site must have arrived while the busy one had a backlog"
    # Between the quiet envelope's send and its store, the busy site stored at most the turn in
    # hand and the turns that had asked before the quiet one could (a frame read takes a turn).
    assert busy_before - asked_at <= 4 * TURN, (asked_at, busy_before)

    await busy_results.wait_for(flood, timeout=60)
    assert max(busy_results.acked.values()) == 1
    assert [e.id for s, e in store.received if s == "plant-a"] == [f"id-{n}" for n in range(flood)]


def _session(gateway: LinkGateway, site: str) -> Session:
    (session,) = gateway.sessions[site]
    return session


async def test_a_site_beyond_its_window_or_buffer_is_no_longer_read(pki: Pki) -> None:
    """The edge's window is larger than the gateway's: the gateway stops reading the stream
    (its memory for the site bounded), and everything arrives once it stores again."""
    pki.site("plant-a")
    store = Recorder()
    store.open.clear()
    window, frame = 64, 8
    gateway = await start_gateway(
        pki, store, settings=dataclasses.replace(FAST, window=window, max_batch=frame)
    )
    results = Results()
    link = edge_link(
        pki,
        gateway.port,
        results,
        settings=dataclasses.replace(FAST, window=4096, max_batch=frame),
    )
    await link.start()
    await link.wait_up(10)
    total = 1000
    for number in range(total):
        await link.send(envelope(number))
    session = _session(gateway, "plant-a")
    await until(lambda: not session.room.is_set(), "the gateway pausing the stream")
    (load,) = gateway.loads()
    assert window <= load.inbound <= window + frame, load
    assert load.inbound_bytes == load.inbound * 100
    assert load.window == window

    store.open.set()
    await results.wait_for(total, timeout=60)
    assert store.ids() == [f"id-{n}" for n in range(total)]
    assert max(results.acked.values()) == 1
    await until(lambda: gateway.loads()[0].inbound == 0, "nothing held")


async def test_a_site_over_its_byte_buffer_is_no_longer_read(pki: Pki) -> None:
    pki.site("plant-a")
    store = Recorder()
    store.open.clear()
    buffer, size, frame = 1 << 20, 100 << 10, 2
    gateway = await start_gateway(
        pki, store, settings=dataclasses.replace(FAST, site_buffer_bytes=buffer)
    )
    results = Results()
    link = edge_link(
        pki, gateway.port, results, settings=dataclasses.replace(FAST, max_batch=frame)
    )
    await link.start()
    await link.wait_up(10)
    total = 60  # 6 MB sent, at most about 1 MB of it held by the gateway
    for number in range(total):
        await link.send(envelope(number, size=size))
    session = _session(gateway, "plant-a")
    await until(lambda: not session.room.is_set(), "the gateway pausing the stream")
    (load,) = gateway.loads()
    assert buffer <= load.inbound_bytes <= buffer + frame * size, load
    store.open.set()
    await results.wait_for(total, timeout=60)
    assert store.ids() == [f"id-{n}" for n in range(total)]


async def test_turns_go_in_the_order_asked_and_a_cancelled_waiter_passes_its_turn_on() -> None:
    turns = Turns(1)
    order: list[str] = []
    release = asyncio.Event()

    async def take(name: str, hold: bool = False) -> None:
        async with turns.turn():
            order.append(name)
            if hold:
                await release.wait()

    first = asyncio.create_task(take("first", hold=True))
    await until(lambda: order == ["first"], "the first turn")
    waiters = [asyncio.create_task(take(name)) for name in ("a", "b", "c")]
    await until(lambda: turns.waiting == 3, "three waiting")
    waiters[1].cancel()
    release.set()
    await asyncio.gather(first, waiters[0], waiters[2])
    assert order == ["first", "a", "c"]
    async with turns.turn():  # the slot came back: a new turn is taken at once
        assert turns.waiting == 0


async def test_a_stream_gives_way_only_while_other_sites_send(pki: Pki) -> None:
    """After a turn that took t, a stream waits t * (1/share - 1) before its next one, but only
    while another site had a turn within the last second; alone it never waits."""
    gateway = await start_gateway(
        pki, Recorder(), settings=dataclasses.replace(FAST, busy_share=0.25)
    )
    pki.site("plant-a")
    link = edge_link(pki, gateway.port, Results())
    await link.start()
    await link.wait_up(10)
    session = _session(gateway, "plant-a")
    gateway._give_way(session, 100.0, 100.2)
    assert session.resume_at == 0.0, "alone: no waiting"
    gateway._last_turn["plant-b"] = 99.5  # another site's turn, half a second ago
    gateway._give_way(session, 100.0, 100.2)
    assert session.resume_at == pytest.approx(100.2 + 0.2 * 3)
    session.resume_at = 0.0
    gateway._last_turn["plant-b"] = 98.0  # the other site fell quiet over a second ago
    gateway._give_way(session, 101.0, 101.2)
    assert session.resume_at == 0.0
    unlimited = dataclasses.replace(FAST, busy_share=1.0)
    gateway.settings = unlimited
    gateway._last_turn["plant-b"] = 101.1
    gateway._give_way(session, 101.0, 101.2)
    assert session.resume_at == 0.0
