"""A gateway in its own process, for tests that kill it: it writes each stored id to a file.

python -m tests.link.gateway_process PKI_DIR PORT OUT_FILE  (prints "PORT <n>" when listening)
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from bridge.link import (
    Envelope,
    LinkGateway,
    Reject,
    Revocations,
    ServerTLS,
    SiteIdentity,
    TLSFiles,
)
from tests.link.helpers import FAST, TRUST_DOMAIN


class FileRecorder:
    def __init__(self, path: Path) -> None:
        self.handle = path.open("a", buffering=1)

    async def accept(
        self, site: SiteIdentity, envelopes: Sequence[Envelope]
    ) -> Sequence[Reject | None]:
        # Stored (written and flushed) before it is acked, like JetStream would.
        self.handle.write("".join(f"{e.id}\n" for e in envelopes))
        self.handle.flush()
        return [None] * len(envelopes)


async def main(pki: Path, port: int, out: Path) -> None:
    gateway = LinkGateway(
        tls=ServerTLS(TLSFiles(pki / "gateway.pem", pki / "gateway.key", pki / "ca.pem")),
        revocations=Revocations((pki / "ca.pem").read_bytes(), pki / "crl.pem", pki / "deny.txt"),
        trust_domain=TRUST_DOMAIN,
        sites={"plant-a": [">"], "plant-b": [">"]},
        handler=FileRecorder(out),
        settings=FAST,
    )
    bound = await gateway.start(f"127.0.0.1:{port}")
    print(f"PORT {bound}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])))
