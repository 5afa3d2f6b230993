"""A gateway killed mid-stream and restarted: the edge resends, every envelope is acked once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.link.helpers import Pki, Results, edge_link, envelope


async def start_process(pki: Pki, port: int, out: Path) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.link.gateway_process", str(pki.root), str(port), str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
    assert line.startswith(b"PORT "), line
    return process, int(line.split()[1])


@pytest.mark.servers
async def test_killing_the_gateway_mid_stream_loses_nothing_and_acks_each_once(
    pki: Pki, tmp_path: Path
) -> None:
    """SIGKILL the gateway while 5000 envelopes flow, restart it on the same port: all arrive."""
    first_out, second_out = tmp_path / "first.ids", tmp_path / "second.ids"
    process, port = await start_process(pki, 0, first_out)
    results = Results()
    link = edge_link(pki, port, results)
    await link.start()
    await link.wait_up(20)
    total = 5000

    async def load() -> None:
        for number in range(total):
            await link.send(envelope(number))
            if number % 50 == 0:
                await asyncio.sleep(0.001)

    sender = asyncio.create_task(load())
    try:
        async with asyncio.timeout(30):
            while len(results.acked) < 1000:
                await asyncio.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        acked_at_kill = len(results.acked)
        restarted, _ = await start_process(pki, port, second_out)
        try:
            await asyncio.wait_for(sender, 60)
            await results.wait_for(total, timeout=60)
        finally:
            restarted.kill()
            restarted.wait()
            if restarted.stdout is not None:
                restarted.stdout.close()
    finally:
        if process.poll() is None:
            process.kill()
        if process.stdout is not None:
            process.stdout.close()
    ids = {f"id-{n}" for n in range(total)}
    assert set(results.acked) == ids, "every envelope acked"
    assert max(results.acked.values()) == 1, "none acked twice"
    assert not results.rejected
    stored = Counter(first_out.read_text().split()) + Counter(second_out.read_text().split())
    assert set(stored) == ids, "every envelope stored by one gateway or the other"
    assert acked_at_kill < total
    assert link.connects == 2
    print(
        f"acked before the kill: {acked_at_kill}; stored twice (resent, left to de-duplication): "
        f"{sum(1 for count in stored.values() if count > 1)}"
    )
