"""Who is on the other end: a site's identity from its client certificate.

A site is named by the single URI SAN of its certificate, ``spiffe://<trust-domain>/site/<name>``.
A certificate with no URI SAN, several URI SANs, another trust domain or another shape is not a
site, whatever else it says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509

from bridge.errors import RbridgeError

_SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9\-]{0,62}$")


class IdentityError(RbridgeError):
    """The peer's certificate does not name an acceptable site; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class SiteIdentity:
    site: str
    trust_domain: str
    uri: str
    serial: int
    not_after_unix: float


def identity_from_certificate(pem: bytes, trust_domain: str) -> SiteIdentity:
    """Read the site identity from a PEM client certificate, or raise :class:`IdentityError`."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise IdentityError("bad-certificate", "the peer certificate could not be parsed") from None
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise IdentityError(
            "no-uri-san", "the certificate has no subject alternative names"
        ) from None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise IdentityError("no-uri-san", "the certificate has no URI SAN naming a site")
    if len(uris) > 1:
        raise IdentityError(
            "several-uri-sans",
            f"the certificate has {len(uris)} URI SANs; a site certificate has exactly one",
        )
    uri = uris[0]
    prefix = f"spiffe://{trust_domain}/site/"
    if not uri.startswith("spiffe://"):
        raise IdentityError("not-spiffe", f"the URI SAN {uri!r} is not a spiffe:// identity")
    if not uri.startswith(prefix):
        raise IdentityError(
            "foreign-trust-domain", f"the identity {uri!r} is not in trust domain {trust_domain!r}"
        )
    site = uri[len(prefix) :]
    if not _SITE_NAME.match(site):
        raise IdentityError(
            "bad-site-name", f"the identity {uri!r} does not end in a valid site name"
        )
    return SiteIdentity(
        site,
        trust_domain,
        uri,
        certificate.serial_number,
        certificate.not_valid_after_utc.timestamp(),
    )
