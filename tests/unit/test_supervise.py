"""Supervised loops: restarted with a growing pause, reported while down, never silent."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge.supervise import Supervisor, frames
from tests.eventually import eventually


async def test_a_failing_loop_is_reported_logged_where_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []
    release = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise ConnectionError("secret 123-45-6789")  # the message must not be logged
        await release.wait()

    loops = Supervisor(first_pause=0.3, max_pause=0.6)
    with caplog.at_level(logging.WARNING, "rbridge.supervise"):
        loops.spawn("pull", flaky)

        async def down() -> bool:
            return bool(loops.not_running())

        await eventually(down, "the loop reported down", timeout=10, every=0.01)
        assert loops.not_running() == [
            "loop pull is not running (failed: ConnectionError; restarts: 0)"
        ]

        async def third_run() -> bool:
            return len(runs) == 3

        await eventually(third_run, "the third run", timeout=10, every=0.01)
    assert loops.restarts() == {"pull": 2}
    assert loops.not_running() == []  # running again
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].startswith("loop pull stopped (ConnectionError, failure 1 in a row) at ")
    assert "unit/test_supervise.py" in errors[0]
    assert "flaky" in errors[0]
    assert "restarting after 0.3 s" in caplog.text
    assert "restarting after 0.6 s" in caplog.text  # the pause grows while it keeps failing
    assert "123-45-6789" not in caplog.text
    release.set()
    await loops.stop()


async def test_a_loop_that_returns_is_a_bug_and_restarted_unless_stopping() -> None:
    runs = 0
    forever = asyncio.Event()

    async def returns_once() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            return
        await forever.wait()

    loops = Supervisor(first_pause=0.01)
    loops.spawn("watch", returns_once)

    async def restarted() -> bool:
        return runs == 2

    await eventually(restarted, "the restart", timeout=10, every=0.01)
    assert loops.restarts() == {"watch": 1}
    loops.closing()
    forever.set()  # now it returns while stopping: not restarted
    task = loops.task("watch")
    assert task is not None
    await asyncio.wait_for(task, 5)
    assert runs == 2


async def test_finish_lets_a_loop_end_on_its_own_and_give_up_hands_over() -> None:
    stop = asyncio.Event()
    ended: list[str] = []

    async def draining() -> None:
        await stop.wait()
        ended.append("drained")

    loops = Supervisor()
    loops.spawn("pull", draining)
    stop.set()
    await loops.finish("pull", 5)
    assert ended == ["drained"]
    assert loops.restarts() == {"pull": 0}

    given_up: list[tuple[str, str]] = []

    async def broken() -> None:
        raise KeyError("x")

    fatal = Supervisor(
        first_pause=0.01,
        give_up_after=3,
        on_give_up=lambda name, error: given_up.append((name, type(error).__name__)),
    )
    fatal.spawn("settle", broken)

    async def gave_up() -> bool:
        return bool(given_up)

    await eventually(gave_up, "giving up", timeout=10, every=0.01)
    assert given_up == [("settle", "KeyError")]
    assert fatal.restarts() == {"settle": 2}
    await fatal.stop()
    await loops.stop()


def test_frames_name_places_not_messages() -> None:
    try:
        {"ssn": 1}["123-45-6789"]
    except KeyError as error:
        found = frames(error)
    assert len(found) == 1
    assert found[0].startswith("unit/test_supervise.py:")
    assert found[0].endswith(" test_frames_name_places_not_messages")
    assert "123" not in "".join(found)
