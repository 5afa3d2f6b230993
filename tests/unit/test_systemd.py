"""The systemd notify protocol over a real datagram socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.runtime import systemd


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_ready_reload_and_stop_reach_systemd(notify_socket: socket.socket) -> None:
    systemd.ready("policy claims revision 7")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=policy claims revision 7"
    systemd.reloading()
    assert notify_socket.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    systemd.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"


async def test_the_watchdog_is_fed_at_half_its_timeout(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 0.2
    feeder = asyncio.create_task(systemd.keep_watchdog_fed())
    received = [await asyncio.to_thread(notify_socket.recv, 64) for _ in range(2)]
    feeder.cancel()
    assert received == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_without_systemd_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    assert systemd.notify("READY=1") is False
    assert systemd.watchdog_interval() is None


async def test_a_service_reloads_on_sighup_and_stops_on_sigterm(
    notify_socket: socket.socket,
) -> None:
    """The runtimes' life cycle: ready, SIGHUP → reloading/reload/ready, SIGTERM → stopping/stop."""
    calls: list[str] = []

    async def stop() -> None:
        calls.append("stop")

    service = asyncio.create_task(
        systemd.serve_until_signalled(
            stop, lambda: "revision 7", reload=lambda: calls.append("reload")
        )
    )
    received = [await asyncio.to_thread(notify_socket.recv, 256)]
    os.kill(os.getpid(), signal.SIGHUP)
    received += [await asyncio.to_thread(notify_socket.recv, 256) for _ in range(2)]
    os.kill(os.getpid(), signal.SIGTERM)
    received.append(await asyncio.to_thread(notify_socket.recv, 256))
    await asyncio.wait_for(service, 5)
    assert calls == ["reload", "stop"]
    assert received[0] == b"READY=1\nSTATUS=revision 7"
    assert received[1].startswith(b"RELOADING=1")
    assert received[2] == b"READY=1\nSTATUS=revision 7"
    assert received[3] == b"STOPPING=1"
