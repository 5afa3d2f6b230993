"""Real certificates, a real gateway and real edge links on loopback, for the link tests."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.link import (
    ClientTLS,
    EdgeLink,
    Envelope,
    Hello,
    LinkGateway,
    LinkSettings,
    Reject,
    Revocations,
    ServerTLS,
    SiteIdentity,
    TLSFiles,
)
from bridge.link.pki import Authority, Issued, write_private, write_public

TRUST_DOMAIN = "rbridge.test"
FAST = LinkSettings(
    keepalive_time=1.0,
    keepalive_timeout=1.0,
    backoff_initial=0.05,
    backoff_max=0.5,
    revocation_check_interval=0.1,
    hello_timeout=2.0,
)


@dataclass
class Pki:
    """A CA and files on disk, with helpers to write certificates for the tests."""

    root: Path
    ca: Authority = field(default_factory=Authority.create)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_public(self.ca_path, self.ca.cert_pem)
        write_public(self.crl_path, self.ca.crl())
        self.deny_path.write_text("# denied sites\n")
        self.write("gateway", self.ca.gateway())

    @property
    def ca_path(self) -> Path:
        return self.root / "ca.pem"

    @property
    def crl_path(self) -> Path:
        return self.root / "crl.pem"

    @property
    def deny_path(self) -> Path:
        return self.root / "deny.txt"

    def write(self, name: str, issued: Issued) -> TLSFiles:
        write_public(self.root / f"{name}.pem", issued.cert_pem)
        write_private(self.root / f"{name}.key", issued.key_pem)
        return TLSFiles(self.root / f"{name}.pem", self.root / f"{name}.key", self.ca_path)

    def files(self, name: str) -> TLSFiles:
        return TLSFiles(self.root / f"{name}.pem", self.root / f"{name}.key", self.ca_path)

    def site(self, site: str, **options: Any) -> TLSFiles:
        return self.write(f"site-{site}", self.ca.site(site, TRUST_DOMAIN, **options))

    def expired_site(self, site: str) -> TLSFiles:
        now = dt.datetime.now(dt.UTC)
        return self.site(
            site, not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1)
        )


class Recorder:
    """An outbound handler that records what it stored; it can be paused or made to refuse."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Envelope]] = []
        self.open = asyncio.Event()
        self.open.set()
        self.refuse_ids: set[str] = set()
        self.batches = 0

    async def accept(
        self, site: SiteIdentity, envelopes: Sequence[Envelope]
    ) -> Sequence[Reject | None]:
        await self.open.wait()
        self.batches += 1
        answers: list[Reject | None] = []
        for envelope in envelopes:
            if envelope.id in self.refuse_ids:
                answers.append(Reject("refused-by-test", "this id is refused"))
            else:
                self.received.append((site.site, envelope))
                answers.append(None)
        return answers

    def ids(self) -> list[str]:
        return [envelope.id for _, envelope in self.received]


class Results:
    """Collects every outcome the link reports, to check each envelope is answered once."""

    def __init__(self) -> None:
        self.acked: Counter[str] = Counter()
        self.rejected: dict[str, Reject] = {}
        self.changed = asyncio.Event()

    def __call__(self, token: Any, envelope: Envelope, reject: Reject | None) -> None:
        if reject is None:
            self.acked[envelope.id] += 1
        else:
            self.rejected[envelope.id] = reject
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 20.0) -> None:
        async def settled() -> None:
            while len(self.acked) + len(self.rejected) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(settled(), timeout)


STARTED: list[Any] = []
"""Gateways and links started by a test, stopped by the autouse fixture in conftest."""


def envelope(number: int, capability: str = "docs.parse", size: int = 100) -> Envelope:
    return Envelope(
        f"id-{number}", capability, b"x" * size, "internal", "rule", 7, f"reply-{number}"
    )


async def start_gateway(
    pki: Pki,
    handler: Any,
    *,
    sites: dict[str, list[str]] | None = None,
    settings: LinkSettings = FAST,
    port: int = 0,
    on_reply_result: Any = None,
) -> LinkGateway:
    gateway = LinkGateway(
        tls=ServerTLS(pki.files("gateway")),
        revocations=Revocations(pki.ca_path.read_bytes(), pki.crl_path, pki.deny_path),
        trust_domain=TRUST_DOMAIN,
        sites=sites if sites is not None else {"plant-a": ["docs.>", "claims.*"], "plant-b": [">"]},
        handler=handler,
        settings=settings,
        on_reply_result=on_reply_result,
    )
    await gateway.start(f"127.0.0.1:{port}")
    STARTED.append(gateway)
    return gateway


def edge_link(
    pki: Pki,
    port: int,
    results: Results,
    *,
    site: str = "plant-a",
    files: TLSFiles | None = None,
    settings: LinkSettings = FAST,
    inbound: Any = None,
    host: str = "localhost",
    standby: Sequence[int] = (),
) -> EdgeLink:
    link = EdgeLink(
        f"{host}:{port}",
        ClientTLS(files or pki.files(f"site-{site}")),
        Hello(site, policy_revision=7),
        on_result=results,
        inbound=inbound,
        settings=settings,
        standby=[f"{host}:{other}" for other in standby],
    )
    STARTED.append(link)
    return link


class BlackholeProxy:
    """A TCP proxy on loopback that can stop forwarding without closing anything."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.blackhole = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._closed = False

    @classmethod
    async def start(cls, target: int, port: int = 0) -> BlackholeProxy:
        proxy = cls(target)
        proxy._server = await asyncio.start_server(
            proxy._handle, "127.0.0.1", port, reuse_address=True
        )
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        return proxy

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target
            )
        except OSError:
            writer.close()
            return
        self._writers += [writer, upstream_writer]
        if self._closed:  # a connection that arrived as the proxy was closing
            self.close()
            return

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                if not self.blackhole:
                    sink.write(data)
                    await sink.drain()

        await asyncio.gather(
            pump(reader, upstream_writer), pump(upstream_reader, writer), return_exceptions=True
        )
        for end in (writer, upstream_writer):  # one side ended: close both, leak neither
            end.transport.abort()

    def close(self) -> None:
        self._closed = True
        for writer in self._writers:
            transport = writer.transport
            if hasattr(transport, "abort"):
                transport.abort()  # a reset, not a polite close
            else:
                writer.close()
        if self._server is not None:
            self._server.close()
