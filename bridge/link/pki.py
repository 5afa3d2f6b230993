"""A small PKI for development and tests: a CA, a gateway certificate, site certificates, a CRL.

Production sites get their certificates from the organisation's own PKI; this module makes the
same shapes locally (``rbridge certs dev``), and the tests use its options to make the bad ones
(expired, not yet valid, two URI SANs, foreign trust domain, wrong CA) on purpose.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_TRUST_DOMAIN = "rbridge.local"


def spiffe_id(trust_domain: str, site: str) -> str:
    """The URI SAN that names a site: ``spiffe://<trust-domain>/site/<name>``."""
    return f"spiffe://{trust_domain}/site/{site}"


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, in PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Authority:
    """A certificate authority that can issue certificates and CRLs."""

    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, name: str = "Residency Bridge development CA", days: int = 3650) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(name, key, certificate)

    @classmethod
    def load(cls, directory: Path) -> Authority:
        """The development CA written in ``directory`` (``ca.pem`` and ``ca.key``).

        Raises ValueError saying what is missing or wrong.
        """
        cert_path, key_path = directory / "ca.pem", directory / "ca.key"
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except OSError as error:
            raise ValueError(
                f"no development CA in {directory}: {error.filename}: {error.strerror}"
            ) from None
        except (TypeError, ValueError):
            raise ValueError(
                f"{cert_path} and {key_path} are not a PEM certificate and key"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or (
            key.public_key().public_numbers() != certificate.public_key().public_numbers()  # type: ignore[union-attr]
        ):
            raise ValueError(f"{key_path} is not the key of {cert_path}")
        name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return cls(str(name[0].value) if name else "CA", key, certificate)

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def issue(
        self,
        common_name: str,
        *,
        uris: Sequence[str] = (),
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
        days: int = 365,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Issued:
        """A leaf certificate with the given subject alternative names and key usages."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in uris]
        names += [x509.DNSName(name) for name in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(minutes=5))
            .not_valid_after(not_after or now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        return Issued(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def gateway(
        self,
        *,
        hosts: Sequence[str] = ("localhost",),
        ips: Sequence[str] = ("127.0.0.1", "::1"),
        days: int = 365,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Issued:
        """A server certificate for the cloud gateway."""
        return self.issue(
            "rbridge gateway",
            dns=hosts,
            ips=ips,
            server=True,
            days=days,
            not_before=not_before,
            not_after=not_after,
        )

    def site(
        self,
        name: str,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        *,
        days: int = 365,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Issued:
        """A client certificate whose single URI SAN names the site."""
        return self.issue(
            f"site {name}",
            uris=[spiffe_id(trust_domain, name)],
            client=True,
            days=days,
            not_before=not_before,
            not_after=not_after,
        )

    def crl(self, revoked_serials: Sequence[int] = (), *, days: int = 30) -> bytes:
        """A CRL signed by this authority listing ``revoked_serials``."""
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=days))
        )
        for serial in revoked_serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only (created 0600; an existing file is replaced)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    temporary.replace(path)


def write_public(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


@dataclass(frozen=True, slots=True)
class DevFiles:
    ca: Path
    crl: Path
    gateway_cert: Path
    gateway_key: Path
    sites: dict[str, tuple[Path, Path]]


def write_dev_pki(
    out: Path, sites: Sequence[str], *, trust_domain: str = DEFAULT_TRUST_DOMAIN, days: int = 365
) -> DevFiles:
    """Write a development CA, a gateway certificate, one certificate per site, and an empty CRL."""
    out.mkdir(parents=True, exist_ok=True)
    authority = Authority.create(days=max(days, 1) * 2)
    write_public(out / "ca.pem", authority.cert_pem)
    write_private(out / "ca.key", authority.key_pem)
    write_public(out / "crl.pem", authority.crl())
    gateway = authority.gateway(days=days)
    write_public(out / "gateway.pem", gateway.cert_pem)
    write_private(out / "gateway.key", gateway.key_pem)
    issued: dict[str, tuple[Path, Path]] = {}
    for site in sites:
        pair = authority.site(site, trust_domain, days=days)
        cert, key = out / f"site-{site}.pem", out / f"site-{site}.key"
        write_public(cert, pair.cert_pem)
        write_private(key, pair.key_pem)
        issued[site] = (cert, key)
    return DevFiles(
        out / "ca.pem", out / "crl.pem", out / "gateway.pem", out / "gateway.key", issued
    )
