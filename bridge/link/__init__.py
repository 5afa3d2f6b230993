"""The mutual-TLS gRPC link between an edge bridge and the cloud gateway.

Only this package touches the generated wire code; runtimes use :class:`Envelope`,
:class:`EdgeLink` and :class:`LinkGateway`.
"""

from bridge.link.edge import EdgeLink, Hello, InboundHandler
from bridge.link.envelope import Envelope, Reject
from bridge.link.gateway import LinkGateway, NotConnected, OutboundHandler
from bridge.link.identity import IdentityError, SiteIdentity
from bridge.link.revocation import Revocations
from bridge.link.settings import LinkSettings
from bridge.link.tls import ClientTLS, ServerTLS, TLSConfigError, TLSFiles

__all__ = [
    "ClientTLS",
    "EdgeLink",
    "Envelope",
    "Hello",
    "IdentityError",
    "InboundHandler",
    "LinkGateway",
    "LinkSettings",
    "NotConnected",
    "OutboundHandler",
    "Reject",
    "Revocations",
    "ServerTLS",
    "SiteIdentity",
    "TLSConfigError",
    "TLSFiles",
]
