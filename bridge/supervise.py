"""Long-running loops that cannot die unnoticed.

Each loop of a runtime or an agent (pulling from a stream, settling acks, watching the policy,
forwarding replies, consuming a capability) runs under a :class:`Supervisor` with a name. When a
loop ends with an exception, the supervisor logs it with the traceback's frames (file, line and
function: never the exception's message or any value, so nothing from a message reaches a log),
reports the loop as not running (``/readyz``), and starts it again after a pause that doubles
from ``first_pause`` to ``max_pause`` (back to the first once the loop has run for a minute). A
loop that returns while the process is not stopping is a bug all the same, and is restarted the
same way. With ``on_give_up``, a loop that failed ``give_up_after`` times in a row is not
restarted: the callback decides (a runtime stops, so systemd or Kubernetes restarts it whole).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("rbridge.supervise")

HEALTHY_AFTER = 60.0


def frames(error: BaseException, limit: int = 8) -> list[str]:
    """The innermost ``limit`` frames of ``error``'s traceback as ``package/file:line function``."""
    summary = traceback.extract_tb(error.__traceback__)[-limit:]
    return [
        f"{'/'.join(frame.filename.split('/')[-2:])}:{frame.lineno} {frame.name}"
        for frame in summary
    ]


@dataclass
class _Loop:
    name: str
    factory: Callable[[], Awaitable[None]]
    task: asyncio.Task[None] | None = None
    failures: int = 0
    restarts: int = 0
    last_error: str = ""
    down: bool = False
    finishing: bool = False
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(
        self,
        *,
        first_pause: float = 0.5,
        max_pause: float = 30.0,
        give_up_after: int = 0,
        on_give_up: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.first_pause = first_pause
        self.max_pause = max_pause
        self.give_up_after = give_up_after
        self.on_give_up = on_give_up
        self._loops: dict[str, _Loop] = {}
        self._stopping = False

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run ``factory()`` as the loop ``name``, for as long as the supervisor runs."""
        loop = _Loop(name, factory)
        self._loops[name] = loop
        loop.task = asyncio.create_task(self._keep(loop), name=name)

    def not_running(self) -> list[str]:
        """A line for each loop that is down, for ``/readyz``."""
        return [
            f"loop {loop.name} is not running (failed: {loop.last_error}; restarts: {loop.restarts})"
            for loop in self._loops.values()
            if loop.down
        ]

    def restarts(self) -> dict[str, int]:
        return {name: loop.restarts for name, loop in self._loops.items()}

    def task(self, name: str) -> asyncio.Task[None] | None:
        loop = self._loops.get(name)
        return None if loop is None else loop.task

    async def _keep(self, loop: _Loop) -> None:
        while not self._stopping:
            loop.started = time.monotonic()
            loop.down = False
            try:
                await loop.factory()
                if self._stopping or loop.finishing:
                    return
                error: BaseException = RuntimeError("the loop returned")
            except asyncio.CancelledError:
                raise
            except Exception as failure:
                if self._stopping:
                    return
                error = failure
            loop.down = True
            loop.last_error = type(error).__name__
            if time.monotonic() - loop.started >= HEALTHY_AFTER:
                loop.failures = 0
            loop.failures += 1
            log.error(
                "loop %s stopped (%s, failure %d in a row) at %s",
                loop.name,
                loop.last_error,
                loop.failures,
                " < ".join(reversed(frames(error))) or "(no traceback)",
            )
            if self.on_give_up is not None and loop.failures >= self.give_up_after > 0:
                self.on_give_up(loop.name, error)
                return
            pause = min(self.first_pause * 2 ** (loop.failures - 1), self.max_pause)
            await asyncio.sleep(pause)
            loop.restarts += 1
            log.warning("loop %s restarting after %.1f s", loop.name, pause)

    def closing(self) -> None:
        """The process is stopping: loops that end from now on are not restarted."""
        self._stopping = True

    async def finish(self, name: str, timeout: float) -> None:
        """Let the loop ``name`` end on its own (its source was stopped), within ``timeout``;
        then it is cancelled."""
        loop = self._loops.get(name)
        if loop is None or loop.task is None:
            return
        loop.finishing = True
        done, _ = await asyncio.wait([loop.task], timeout=timeout)
        if not done:
            loop.task.cancel()
            await asyncio.wait([loop.task], timeout=1.0)

    async def finish_all(self, timeout: float) -> None:
        """Let every loop end on its own (their sources were closed) within ``timeout``; then
        the rest are cancelled."""
        self._stopping = True
        tasks = [loop.task for loop in self._loops.values() if loop.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        await self.stop()

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel every loop and wait (up to ``timeout``) for them to end."""
        self._stopping = True
        tasks = [loop.task for loop in self._loops.values() if loop.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
