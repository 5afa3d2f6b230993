"""The systemd service protocol, without a dependency: readiness, reloads, stop and watchdog.

When started by systemd with ``Type=notify`` (``NOTIFY_SOCKET`` set), the runtimes send
``READY=1`` once they serve, ``RELOADING=1`` / ``READY=1`` around a policy reload,
``STOPPING=1`` on shutdown, and ``WATCHDOG=1`` at half the unit's ``WatchdogSec`` while the
event loop is responsive (so a hung loop gets the process restarted). Elsewhere these are no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable


def _address() -> str | None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    # A leading '@' names a socket in the abstract namespace.
    return "\0" + address[1:] if address.startswith("@") else address


def notify(*states: str) -> bool:
    """Send ``states`` (e.g. ``"READY=1"``) to systemd; False when not under systemd."""
    address = _address()
    if address is None:
        return False
    message = "\n".join(states).encode()
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message)
        return True
    return False


def ready(status: str) -> None:
    notify("READY=1", f"STATUS={status}")


def reloading() -> None:
    # systemd 253+ wants the monotonic time with RELOADING=1 for Type=notify-reload.
    notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")


def stopping() -> None:
    notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd set for this process, in seconds, or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.1)
    except ValueError:
        return None


async def keep_watchdog_fed() -> None:
    """Ping the watchdog for as long as the event loop runs; returns at once without one."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def serve_until_signalled(
    stop: Callable[[], Awaitable[None]],
    status: Callable[[], str],
    *,
    reload: Callable[[], object] | None = None,
) -> None:
    """Run a started service: tell systemd it is ready, feed the watchdog, reload on SIGHUP,
    and on SIGTERM or SIGINT say it is stopping and await ``stop()``."""
    stopping_now = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping_now.set)
    if reload is not None:

        def reload_now() -> None:
            reloading()
            reload()
            ready(status())

        loop.add_signal_handler(signal.SIGHUP, reload_now)
    ready(status())
    watchdog = asyncio.create_task(keep_watchdog_fed())
    await stopping_now.wait()
    logging.getLogger("rbridge").info("stopping")
    stopping()
    watchdog.cancel()
    await stop()
