"""Connecting to an on-prem NATS that requires an nkey (as the hardened NATS unit does)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import nats
import nkeys
import pytest

from bridge import natspublish
from bridge.natsserver import NatsServer
from bridge.runtime.natsconn import NatsConnectError, connect


@pytest.mark.servers
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
        await natspublish.flush(connection)
        assert connection.is_connected
        await connection.close()
        with pytest.raises(
            NatsConnectError, match=r"(?i)cannot connect to NATS at .*authorization"
        ):
            await connect(server.url, timeout=3)
    finally:
        server.kill()


@pytest.mark.servers
async def test_rbridge_nats_nkeys_makes_the_identities_the_packaged_server_trusts(
    tmp_path: Path,
) -> None:
    """Bridge and agents authenticate; agents may use JetStream but not delete the bridge's streams."""
    from bridge.cli.main import main

    # Beside the server's configuration, as /etc/rbridge/nats-auth.conf is beside nats.conf.
    seeds, auth = tmp_path / "nkeys", tmp_path / "nats" / "nats-auth.conf"
    assert main(["nats", "nkeys", "--dir", str(seeds), "--auth-conf", str(auth)]) == 2  # no dir
    auth.parent.mkdir()
    assert main(["nats", "nkeys", "--dir", str(seeds), "--auth-conf", str(auth)]) == 0
    assert (seeds / "bridge.nk").stat().st_mode & 0o777 == 0o600
    assert main(["nats", "nkeys", "--dir", str(seeds), "--auth-conf", str(auth)]) == 2
    server = NatsServer(tmp_path / "nats", extra_config="include ./nats-auth.conf")
    server.start()
    try:
        bridge = await connect(server.url, nkey_seed=seeds / "bridge.nk")
        await bridge.jetstream().add_stream(name="RB_OUT", subjects=["rb.out.>"])
        agents = await connect(server.url, nkey_seed=seeds / "agents.nk")
        await agents.jetstream().publish("rb.out.docs.parse", b"{}")  # allowed
        # A permission violation: the server drops the request, so no API answer comes.
        with pytest.raises(nats.errors.TimeoutError):
            await agents.jetstream().delete_stream("RB_OUT")
        # Nor may an agent read the raw messages of RB_OUT or hold them with a consumer of its
        # own (under interest retention one that never acks would keep the stream full).
        agent_js = agents.jetstream(timeout=2)
        with pytest.raises(nats.errors.TimeoutError):
            await agent_js.add_consumer("RB_OUT", durable_name="snoop", filter_subject="rb.out.>")
        with pytest.raises(nats.errors.TimeoutError):
            await agent_js.get_msg("RB_OUT", 1)
        with pytest.raises(nats.errors.TimeoutError):
            await agent_js.pull_subscribe("rb.out.>", durable="snoop2", stream="RB_OUT")
        assert [c.name for c in await bridge.jetstream().consumers_info("RB_OUT")] == []
        assert (await bridge.jetstream().stream_info("RB_OUT")).state.messages == 1
        await agents.close()
        await bridge.close()
        with pytest.raises(NatsConnectError, match=r"(?i)authorization"):
            await connect(server.url, timeout=3)
    finally:
        server.kill()


async def test_a_connection_attempt_that_swallows_a_cancellation_is_still_given_up() -> None:
    """Like nats-py's reconnect loop when wait_for's cancellation is lost: cancel until it stops."""
    from bridge.cancellation import within

    swallowed = 0

    async def stubborn() -> Any:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 1:
                    continue  # the lost cancellation
                raise

    with pytest.raises(TimeoutError, match=r"no connection within 0\.1 s"):
        await asyncio.wait_for(within(stubborn(), 0.1, "connection"), 10)
    assert swallowed == 2
