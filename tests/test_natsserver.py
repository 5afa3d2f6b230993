"""The nats-server helper: a real server, JetStream on, restartable on the same port."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from bridge.natsserver import NatsServer, NatsServerError


@pytest.mark.servers
async def test_a_real_server_with_jetstream_survives_a_restart(tmp_path: Path) -> None:
    """Messages stored in a file stream are still there after a restart on the same port."""
    server = NatsServer(tmp_path / "n", sync_interval="always")
    url = server.start()
    try:
        connection = await nats.connect(url)
        stream = connection.jetstream()
        await stream.add_stream(name="T", subjects=["t.>"])
        await stream.publish("t.1", b"kept")
        await connection.close()
        port = server.port
        server.kill()
        assert server.restart() == f"nats://127.0.0.1:{port}"
        connection = await nats.connect(server.url)
        message = await connection.jetstream().get_msg("T", 1)
        assert message.data == b"kept"
        await connection.close()
    finally:
        server.kill()


@pytest.mark.servers
def test_a_server_that_cannot_start_says_where_to_look(tmp_path: Path) -> None:
    """A broken configuration is a clear error naming the log file."""
    server = NatsServer(tmp_path / "bad", extra_config="this is { not valid")
    with pytest.raises(NatsServerError, match=r"nats-server exited with \d+; see .*nats\.log"):
        server.start(timeout=10)
