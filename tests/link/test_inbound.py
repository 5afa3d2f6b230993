"""Inbound batches are taken by their own task: the reader never waits on them, batches that
queue up meanwhile are taken together, in order, and a failure reaches the reader."""

from __future__ import annotations

import asyncio

import pytest

from bridge.link.inbound import InboundBatches


async def test_batches_queued_behind_a_slow_one_are_taken_together_in_order() -> None:
    release = asyncio.Event()
    taken: list[list[int]] = []

    async def handle(batch: list[int]) -> None:
        taken.append(batch)
        if len(taken) == 1:
            await release.wait()  # the first batch waits on NATS

    inbound = InboundBatches(handle)
    inbound.put([1, 2])
    await asyncio.sleep(0)  # the task takes the first batch
    for batch in ([3], [4, 5], [6]):
        inbound.put(batch)  # the reader goes on at once
    assert taken == [[1, 2]]
    release.set()
    await inbound.drain()
    assert taken == [[1, 2], [3, 4, 5, 6]]
    await inbound.close()


async def test_a_failed_handler_is_raised_in_the_reader() -> None:
    async def handle(_batch: list[int]) -> None:
        raise RuntimeError("store gone")

    inbound = InboundBatches(handle)
    inbound.put([1])
    with pytest.raises(RuntimeError, match="store gone"):
        await inbound.drain()
    with pytest.raises(RuntimeError, match="store gone"):
        inbound.put([2])
    await inbound.close()
