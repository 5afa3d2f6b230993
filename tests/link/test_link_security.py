"""Who may connect: every refusal is clear on the side that refuses, and nothing gets through."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from bridge.link import ClientTLS, EdgeLink, Hello, TLSFiles
from bridge.link.pki import Authority, spiffe_id, write_private, write_public
from bridge.link.v1 import link_pb2 as pb
from bridge.link.v1 import link_pb2_grpc as pb_grpc
from tests.link.helpers import (
    FAST,
    TRUST_DOMAIN,
    Pki,
    Recorder,
    Results,
    edge_link,
    envelope,
    start_gateway,
)


async def refused(link: EdgeLink, timeout: float = 10.0, expect: str = "") -> str:
    """Start the link, let it try, and return the error it reports (it must never come up).

    With ``expect``, wait for an error starting with it: gRPC sometimes reports a stream the
    server aborted as it opened as a generic INTERNAL error, and the link simply tries again.
    """
    await link.start()
    try:
        async with asyncio.timeout(timeout):
            while not link.last_error.startswith(expect) or not link.last_error:
                assert link.state != "up"
                await asyncio.sleep(0.02)
        assert link.state != "up"
        assert link.connects == 0
        return link.last_error
    finally:
        await link.stop(0)


async def test_a_certificate_from_another_ca_is_refused_in_the_handshake(
    pki: Pki, tmp_path: Path
) -> None:
    """A site certificate signed by a foreign CA never completes TLS."""
    gateway = await start_gateway(pki, Recorder())
    other = Pki(tmp_path / "other")
    files = other.site("plant-a")
    foreign = TLSFiles(files.cert, files.key, other.ca_path)
    # The edge trusts the real CA for the gateway but presents the foreign certificate.
    mixed = TLSFiles(foreign.cert, foreign.key, pki.ca_path)
    error = await refused(
        EdgeLink(
            f"localhost:{gateway.port}",
            _unchecked(mixed),
            Hello("plant-a"),
            on_result=Results(),
            settings=FAST,
        )
    )
    assert "TLS handshake with the gateway failed" in error or "unavailable" in error
    await gateway.stop(0)


def _unchecked(files: TLSFiles) -> ClientTLS:
    """Client credentials without the edge's own pre-flight checks, to test the gateway's."""

    class Raw(ClientTLS):
        def credentials(self) -> grpc.ChannelCredentials:
            self._stamp = self.files.stamp()
            return grpc.ssl_channel_credentials(
                self.files.ca.read_bytes(),
                self.files.key.read_bytes(),
                self.files.cert.read_bytes(),
            )

    return Raw(files)


async def test_the_edge_checks_its_own_certificate_before_connecting(pki: Pki) -> None:
    """An expired or mismatched local certificate is reported as such, without a connection."""
    gateway = await start_gateway(pki, Recorder())
    expired = pki.expired_site("plant-a")
    error = await refused(edge_link(pki, gateway.port, Results(), files=expired))
    assert "TLS configuration" in error
    assert "expired on" in error
    await gateway.stop(0)


@pytest.mark.parametrize("when", ["expired", "not-yet-valid"])
async def test_out_of_date_client_certificates_are_refused_by_the_gateway(
    pki: Pki, when: str
) -> None:
    """Even if an edge skipped its checks, the gateway's TLS refuses a certificate out of date."""
    gateway = await start_gateway(pki, Recorder())
    now = dt.datetime.now(dt.UTC)
    if when == "expired":
        files = pki.site(
            "plant-a", not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1)
        )
    else:
        files = pki.site(
            "plant-a", not_before=now + dt.timedelta(days=1), not_after=now + dt.timedelta(days=10)
        )
    error = await refused(
        EdgeLink(
            f"localhost:{gateway.port}",
            _unchecked(files),
            Hello("plant-a"),
            on_result=Results(),
            settings=FAST,
        )
    )
    assert "TLS handshake with the gateway failed" in error or "unavailable" in error
    assert gateway.sessions == {}
    await gateway.stop(0)


async def test_a_client_without_a_certificate_is_refused(pki: Pki) -> None:
    """mTLS: no client certificate, no stream."""
    gateway = await start_gateway(pki, Recorder())
    credentials = grpc.ssl_channel_credentials(pki.ca_path.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{gateway.port}", credentials) as channel:
        call = pb_grpc.LinkStub(channel).Connect()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.write(pb.EdgeFrame(hello=pb.Hello(site="plant-a")))
            await call.read()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert gateway.sessions == {}
    await gateway.stop(0)


async def test_a_plaintext_client_is_refused(pki: Pki) -> None:
    """A client that does not speak TLS gets nowhere."""
    gateway = await start_gateway(pki, Recorder())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        call = pb_grpc.LinkStub(channel).Connect()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.write(pb.EdgeFrame(hello=pb.Hello(site="plant-a")))
            await call.read()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert gateway.sessions == {}
    await gateway.stop(0)


async def test_a_gateway_whose_name_does_not_match_is_refused_by_the_edge(pki: Pki) -> None:
    """The edge verifies the gateway's name: a certificate for another host is refused."""
    pki.write("gateway", pki.ca.gateway(hosts=["gateway.example.com"], ips=[]))
    gateway = await start_gateway(pki, Recorder())
    error = await refused(edge_link(pki, gateway.port, Results()))
    assert "TLS handshake with the gateway failed" in error or "unavailable" in error
    assert gateway.sessions == {}
    await gateway.stop(0)


async def test_the_name_the_edge_verifies_can_be_configured(pki: Pki) -> None:
    """With server_name set, the edge accepts exactly that name on the gateway's certificate."""
    pki.write("gateway", pki.ca.gateway(hosts=["gateway.example.com"], ips=[]))
    gateway = await start_gateway(pki, Recorder())
    link = EdgeLink(
        f"127.0.0.1:{gateway.port}",
        ClientTLS(pki.files("site-plant-a"), server_name="gateway.example.com"),
        Hello("plant-a"),
        on_result=Results(),
        settings=FAST,
    )
    await link.start()
    await link.wait_up(10)
    await link.stop(1)
    await gateway.stop(0)


async def _refused_by_gateway(pki: Pki, files: TLSFiles, code: str, site: str = "plant-a") -> None:
    gateway = await start_gateway(pki, Recorder())
    link = EdgeLink(
        f"localhost:{gateway.port}",
        ClientTLS(files),
        Hello(site),
        on_result=Results(),
        settings=FAST,
    )
    error = await refused(link, expect="the gateway refused this site")
    assert error.startswith(f"the gateway refused this site: {code}:"), error
    assert code in [refusal for refusal, _ in gateway.refused]
    assert gateway.sessions == {}
    await gateway.stop(0)


async def test_an_unknown_site_is_refused(pki: Pki) -> None:
    """A valid certificate for a site the gateway does not know: refused, and the gateway says so."""
    await _refused_by_gateway(pki, pki.site("plant-z"), "unknown-site", site="plant-z")


async def test_two_uri_sans_are_refused(pki: Pki) -> None:
    """A certificate naming two identities names none."""
    issued = pki.ca.issue(
        "two",
        uris=[spiffe_id(TRUST_DOMAIN, "plant-a"), spiffe_id(TRUST_DOMAIN, "plant-b")],
        client=True,
    )
    await _refused_by_gateway(pki, pki.write("two", issued), "several-uri-sans")


async def test_no_uri_san_is_refused(pki: Pki) -> None:
    """A client certificate without a site identity is refused."""
    await _refused_by_gateway(
        pki, pki.write("nouri", pki.ca.issue("nouri", dns=["plant-a"], client=True)), "no-uri-san"
    )


async def test_a_foreign_trust_domain_is_refused(pki: Pki) -> None:
    """spiffe://other.domain/site/plant-a is not plant-a of this trust domain."""
    files = pki.write("foreign", pki.ca.site("plant-a", "other.domain"))
    await _refused_by_gateway(pki, files, "foreign-trust-domain")


async def test_a_revoked_serial_is_refused(pki: Pki) -> None:
    """A certificate whose serial is on the CRL is refused at connection."""
    files = pki.site("plant-a")
    revoked = x509.load_pem_x509_certificate(files.cert.read_bytes()).serial_number
    write_public(pki.crl_path, pki.ca.crl([revoked]))
    await _refused_by_gateway(pki, files, "revoked")


async def test_a_site_on_the_deny_list_is_refused(pki: Pki) -> None:
    """The deny list refuses a site whatever its certificate."""
    pki.deny_path.write_text("plant-a  # compromised host, ticket 4711\n")
    await _refused_by_gateway(pki, pki.files("site-plant-a"), "revoked")


async def test_revocation_closes_a_live_stream(pki: Pki) -> None:
    """Adding a connected site to the deny list ends its stream within the check interval."""
    gateway = await start_gateway(pki, Recorder())
    results = Results()
    link = edge_link(pki, gateway.port, results)
    await link.start()
    await link.wait_up(10)
    pki.deny_path.write_text("plant-a\n")
    async with asyncio.timeout(10):
        while gateway.connected("plant-a"):
            await asyncio.sleep(0.05)
    async with asyncio.timeout(10):
        while "deny list" not in link.last_error and "refused" not in link.last_error:
            await asyncio.sleep(0.05)
    assert link.state != "up"
    await link.stop(0)
    await gateway.stop(0)


async def test_a_hello_for_another_site_is_refused(pki: Pki) -> None:
    """The site in Hello must be the one the certificate names."""
    gateway = await start_gateway(pki, Recorder())
    link = EdgeLink(
        f"localhost:{gateway.port}",
        ClientTLS(pki.files("site-plant-a")),
        Hello("plant-b"),
        on_result=Results(),
        settings=FAST,
    )
    error = await refused(link)
    assert "site-mismatch" in error
    await gateway.stop(0)


async def test_a_capability_the_site_may_not_send_is_rejected_not_dropped(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """Each such envelope gets a reject with a code; the others in the batch are stored."""
    recorder, results = Recorder(), Results()
    gateway = await start_gateway(pki, recorder)
    link = edge_link(pki, gateway.port, results)
    await link.start()
    await link.wait_up(10)
    await link.send(envelope(1, "docs.parse"))
    await link.send(envelope(2, "health.records"))
    await link.send(envelope(3, "claims.triage"))
    await results.wait_for(3)
    assert set(results.acked) == {"id-1", "id-3"}
    assert results.rejected["id-2"].code == "capability-not-allowed"
    assert "health.records" in results.rejected["id-2"].reason
    assert recorder.ids() == ["id-1", "id-3"]
    assert any("may not send" in record.getMessage() for record in caplog.records)
    await link.stop(1)
    await gateway.stop(0)


async def test_tls_material_errors_are_clear(tmp_path: Path) -> None:
    """Missing files, garbage PEM and a key from another certificate are named precisely."""
    from bridge.link.tls import TLSConfigError, load_material

    authority = Authority.create()
    one, two = authority.site("a"), authority.site("b")
    write_public(tmp_path / "ca.pem", authority.cert_pem)
    write_public(tmp_path / "one.pem", one.cert_pem)
    write_private(tmp_path / "two.key", two.key_pem)
    (tmp_path / "garbage.pem").write_text("hello")
    cases = [
        (
            TLSFiles(tmp_path / "absent.pem", tmp_path / "two.key", tmp_path / "ca.pem"),
            "cannot read the certificate",
        ),
        (
            TLSFiles(tmp_path / "garbage.pem", tmp_path / "two.key", tmp_path / "ca.pem"),
            "is not a PEM certificate",
        ),
        (
            TLSFiles(tmp_path / "one.pem", tmp_path / "garbage.pem", tmp_path / "ca.pem"),
            "not an unencrypted PEM private key",
        ),
        (
            TLSFiles(tmp_path / "one.pem", tmp_path / "two.key", tmp_path / "ca.pem"),
            "does not belong to the certificate",
        ),
        (
            TLSFiles(tmp_path / "one.pem", tmp_path / "two.key", tmp_path / "garbage.pem"),
            "not a PEM CA certificate",
        ),
    ]
    for files, fragment in cases:
        with pytest.raises(TLSConfigError, match=fragment):
            load_material(files)
