"""Connecting to an on-prem NATS that requires an nkey (as the hardened NATS unit does)."""

from __future__ import annotations

import os
from pathlib import Path

import nkeys
import pytest

from bridge.natsserver import NatsServer
from bridge.runtime.natsconn import NatsConnectError, connect


async def test_an_nkey_seed_file_authenticates_and_nothing_else_does(tmp_path: Path) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(seed).public_key.decode()
    seed_file = tmp_path / "edge.nk"
    seed_file.write_bytes(seed)
    seed_file.chmod(0o600)
    server = NatsServer(
        tmp_path / "nats", extra_config=f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}'
    )
    server.start()
    try:
        connection = await connect(server.url, nkey_seed=seed_file)
        await connection.publish("probe", b"x")
        await connection.flush()
        assert connection.is_connected
        await connection.close()
        with pytest.raises(
            NatsConnectError, match=r"(?i)cannot connect to NATS at .*authorization"
        ):
            await connect(server.url, timeout=3)
    finally:
        server.kill()
