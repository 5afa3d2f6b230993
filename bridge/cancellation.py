"""Cancelling for certain, and giving up on an attempt after a timeout.

``asyncio.wait_for`` (Python 3.11) can lose a cancellation that arrives just as its own inner
timeout fires. nats-py awaits it inside loops that never end by themselves (the first
connection's retries, a heartbeat's publishes), so a single ``task.cancel()`` can leave such a
task running for ever and whoever awaits it hanging. These helpers cancel until the task has
really ended. Shared by the runtimes and the agent SDKs; asyncio only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def cancel_until_done(task: asyncio.Task[Any], *, attempts: int = 40) -> bool:
    """Cancel ``task`` again every 0.25 s until it has ended; False if it never did."""
    for _ in range(attempts):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return True
    return False


async def within(attempt: Coroutine[Any, Any, T], timeout: float, what: str = "result") -> T:
    """The result of ``attempt`` if it finishes within ``timeout`` seconds; otherwise it is
    cancelled for certain and :class:`TimeoutError` ("no <what> within …") is raised."""
    task = asyncio.ensure_future(attempt)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if done:
        return task.result()
    await cancel_until_done(task)
    if task.done() and not task.cancelled() and task.exception() is None:
        # It succeeded just too late: release what it made (e.g. a NATS connection).
        close = getattr(task.result(), "close", None)
        if close is not None:
            await close()
    raise TimeoutError(f"no {what} within {timeout:g} s")
