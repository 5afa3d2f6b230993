"""The cloud gateway against a real nats-server: stored in RB_IN, checked, replies forwarded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import nats
import pytest

from bridge.cloud.app import CloudGateway
from bridge.cloud.config import CloudSettings
from bridge.link import ClientTLS, EdgeLink, Envelope, Hello, Reject
from bridge.natsserver import NatsServer
from tests.eventually import eventually
from tests.link.helpers import FAST, Pki, Results
from tests.runtime.helpers import cloud_settings, http_get


@pytest.fixture
async def cloud(pki: Pki, nats_server: NatsServer) -> AsyncIterator[CloudGateway]:
    gateway = CloudGateway(cloud_settings(pki, nats_server.url))
    await gateway.start()
    yield gateway
    await gateway.stop()


class Inbound:
    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def accept(self, envelopes: Sequence[Envelope]) -> Sequence[Reject | None]:
        self.received.extend(envelopes)
        return [None] * len(envelopes)


async def linked(pki: Pki, port: int, results: Results, inbound: Inbound | None = None) -> EdgeLink:
    link = EdgeLink(
        f"localhost:{port}",
        ClientTLS(pki.files("site-plant-a")),
        Hello("plant-a", "edge-1", 7),
        on_result=results,
        inbound=inbound,
        settings=FAST,
    )
    await link.start()
    await link.wait_up(10)
    return link


async def test_envelopes_are_stored_with_the_gateways_headers_and_acked_after(
    pki: Pki, nats_server: NatsServer, cloud: CloudGateway
) -> None:
    """Stored on rb.in.<capability> with Nats-Msg-Id = envelope id; forged headers dropped; resends de-duplicated."""
    results = Results()
    link = await linked(pki, cloud.port, results)
    forged = {"Nats-Msg-Id": "forged", "Rb-Site": "plant-z", "rb-class": "public", "X-Trace": "t-1"}
    await link.send(
        Envelope("e-1", "docs.parse", b'{"a":1}', "internal", "rule-x", 7, "tok", forged)
    )
    await results.wait_for(1)
    assert results.acked["e-1"] == 1
    connection = await nats.connect(nats_server.url)
    js = connection.jetstream()
    message = await js.get_msg("RB_IN", 1)
    assert message.subject == "rb.in.docs.parse"
    assert message.data == b'{"a":1}'
    headers = message.headers or {}
    assert headers["Nats-Msg-Id"] == "e-1"
    assert (
        headers["Rb-Site"],
        headers["Rb-Rule"],
        headers["Rb-Policy"],
        headers["Rb-Class"],
        headers["Rb-Reply"],
    ) == ("plant-a", "rule-x", "7", "internal", "tok")
    assert headers["X-Trace"] == "t-1"
    assert "rb-class" not in headers
    # The same id again (a resend after a broken link) is acked and not stored twice.
    await link.send(Envelope("e-1", "docs.parse", b'{"a":1}', "internal", "rule-x", 7))

    async def resend_acked() -> bool:
        return results.acked["e-1"] == 2

    await eventually(resend_acked, "the resend acked", timeout=20)
    info = await js.stream_info("RB_IN")
    assert (info.state.messages, info.state.last_seq) == (1, 1)
    await connection.close()
    await link.stop(1)


async def test_the_gateways_own_checks_refuse_with_a_code(
    pki: Pki, nats_server: NatsServer, cloud: CloudGateway
) -> None:
    """Old policy revisions, values the leak guard finds, bad headers: rejected, counted, not stored."""
    results = Results()
    link = await linked(pki, cloud.port, results)
    await link.send(Envelope("old", "docs.parse", b"{}", "internal", "r", 3))
    await link.send(Envelope("ssn", "docs.parse", b'{"n":"123-45-6789"}', "internal", "r", 7))
    await link.send(Envelope("mail", "docs.parse", b'{"n":"a@example.com"}', "internal", "r", 7))
    await link.send(
        Envelope("job", "hr.jobs.publish", b'{"n":"jobs@example.com"}', "public", "r", 7)
    )
    await link.send(
        Envelope("hdr", "docs.parse", b"{}", "internal", "r", 7, headers={"X-Bad": "a\r\nb"})
    )
    await results.wait_for(5)
    assert results.rejected["old"].code == "revision-refused"
    assert results.rejected["ssn"] == Reject(
        "leak-guard", "the payload holds a value of class 'us_ssn'"
    )
    assert results.rejected["mail"].code == "leak-guard"
    assert results.rejected["hdr"].code == "bad-header"
    assert set(results.acked) == {"job"}
    metrics = await http_get(cloud.http_port, "/metrics")
    assert 'rbridge_leak_guard_hits_total{detector="us_ssn",site="plant-a"} 1.0' in metrics
    assert "123-45-6789" not in metrics
    await link.stop(1)


async def test_replies_wait_in_the_stream_until_the_site_connects(
    pki: Pki, nats_server: NatsServer, cloud: CloudGateway
) -> None:
    """Published while the site is offline, delivered when it connects, acked after the edge acked."""
    connection = await nats.connect(nats_server.url)
    js = connection.jetstream()
    for number in range(5):
        await js.publish(
            "rb.reply.plant-a",
            f'{{"n":{number}}}'.encode(),
            headers={
                "Rb-Reply": f"tok-{number}",
                "Rb-Capability": "docs.parse",
                "Nats-Msg-Id": f"r-{number}",
            },
        )
    inbound = Inbound()
    link = await linked(pki, cloud.port, Results(), inbound)
    async with asyncio.timeout(10):
        while len(inbound.received) < 5:
            await asyncio.sleep(0.05)
    assert [e.reply_token for e in inbound.received] == [f"tok-{n}" for n in range(5)]
    assert inbound.received[0].capability == "docs.parse"
    async with asyncio.timeout(10):
        while (await js.consumer_info("RB_REPLY", "reply-plant-a")).num_ack_pending:
            await asyncio.sleep(0.05)
    info = await js.consumer_info("RB_REPLY", "reply-plant-a")
    assert info.num_pending == 0
    await connection.close()
    await link.stop(1)


async def test_health_endpoints(cloud: CloudGateway) -> None:
    assert (await http_get(cloud.http_port, "/healthz")).strip() == "ok"
    assert (await http_get(cloud.http_port, "/readyz")).strip() == "ready"


async def test_plaintext_grpc_health_for_probes_serves_health_and_nothing_else(
    pki: Pki, nats_server: NatsServer
) -> None:
    """Orchestrators probe gRPC health without a client certificate; the link stays mTLS-only."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from bridge.link.v1 import link_pb2_grpc

    gateway = CloudGateway(cloud_settings(pki, nats_server.url, health_listen="127.0.0.1:0"))
    await gateway.start()
    try:
        assert gateway.gateway is not None
        port = gateway.gateway.health_port
        assert port not in (0, gateway.port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined]
            answer = await check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                call = link_pb2_grpc.LinkStub(channel).Connect(timeout=5)
                await call.read()
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await gateway.stop()


def test_settings_report_every_problem(tmp_path: Path) -> None:
    """A bad file: each problem on its own line with its key."""
    from bridge.runtime.config import ConfigError

    path = tmp_path / "cloud.yaml"
    path.write_text("sites: {a: {capabilities: ['x..y']}}\nlisten: 1\ncolour: red\n")
    with pytest.raises(ConfigError) as caught:
        CloudSettings.load(path)
    problems = "\n".join(caught.value.problems)
    assert f"{path}: tls: Field required" in problems
    assert f"{path}: colour: unknown key" in problems
    assert "bad capability pattern 'x..y'" in problems
