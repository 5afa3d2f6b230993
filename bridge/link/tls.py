"""TLS material for the link: loaded with clear errors, pinned to one CA, reloaded from disk.

The CA is always given: grpcio falls back to the system trust store when it is not, and a link
that trusts every public CA is not a private link. The gateway's credentials reload on the next
handshake after the files change on disk (grpcio's dynamic server credentials); the edge checks
its files before each connection attempt and rebuilds its channel when they changed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bridge.errors import RbridgeError

log = logging.getLogger("rbridge.link.tls")
Stamp = tuple[tuple[int, int, int], ...]


class TLSConfigError(RbridgeError):
    """A certificate, key or CA file is missing, malformed, mismatched or out of date."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Where one side's certificate, private key and the pinned CA live."""

    cert: Path
    key: Path
    ca: Path

    def stamp(self) -> Stamp:
        """A fingerprint of the files' identity and age, to notice replacement cheaply."""
        stamps = []
        for path in (self.cert, self.key, self.ca):
            try:
                info = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
                continue
            stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
        return tuple(stamps)


@dataclass(frozen=True, slots=True)
class TLSMaterial:
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    not_after: dt.datetime
    serial: int = 0


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TLSConfigError(f"cannot read the {what} {path}: {error.strerror}") from None
    if not data.strip():
        raise TLSConfigError(f"the {what} {path} is empty")
    return data


def load_material(files: TLSFiles, *, now: dt.datetime | None = None) -> TLSMaterial:
    """Read and check one side's TLS files: parseable, key matching certificate, in date."""
    cert_pem, key_pem, ca_pem = (
        _read(files.cert, "certificate"),
        _read(files.key, "private key"),
        _read(files.ca, "CA certificate"),
    )
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise TLSConfigError(f"{files.cert} is not a PEM certificate") from None
    try:
        authorities = x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        raise TLSConfigError(f"{files.ca} is not a PEM CA certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise TLSConfigError(f"{files.key} is not an unencrypted PEM private key") from None
    public = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if (
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        != public
    ):
        raise TLSConfigError(
            f"the private key {files.key} does not belong to the certificate {files.cert}"
        )
    if not any(certificate.issuer == authority.subject for authority in authorities):
        raise TLSConfigError(f"the certificate {files.cert} was not issued by the CA in {files.ca}")
    moment = now or dt.datetime.now(dt.UTC)
    if certificate.not_valid_after_utc <= moment:
        raise TLSConfigError(
            f"the certificate {files.cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if certificate.not_valid_before_utc > moment:
        raise TLSConfigError(
            f"the certificate {files.cert} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    return TLSMaterial(
        cert_pem, key_pem, ca_pem, certificate.not_valid_after_utc, certificate.serial_number
    )


class ServerTLS:
    """The gateway's credentials: client certificates required, the CA pinned, reloadable."""

    def __init__(self, files: TLSFiles) -> None:
        self.files = files
        self._material = load_material(files)
        self._stamp = files.stamp()
        self.reloads = 0

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self._material),
            self._fetch,  # type: ignore[arg-type]  # returning None means "unchanged" (grpc docs)
            require_client_authentication=True,
        )

    @staticmethod
    def _configuration(material: TLSMaterial) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(material.key_pem, material.cert_pem)], root_certificates=material.ca_pem
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC before each handshake, on its own thread: cheap when nothing changed.
        stamp = self.files.stamp()
        if stamp == self._stamp:
            return None
        try:
            material = load_material(self.files)
        except TLSConfigError as error:
            # Half-written files during a rotation land here; keep serving the old pair.
            log.warning("gateway certificate not reloaded: %s", error)
            return None
        self._stamp, self._material = stamp, material
        self.reloads += 1
        log.info("gateway certificate reloaded from %s", self.files.cert)
        return self._configuration(material)


class ClientTLS:
    """The edge's credentials: its site certificate, the pinned CA, the gateway name to verify."""

    def __init__(self, files: TLSFiles, server_name: str | None = None) -> None:
        self.files = files
        self.server_name = server_name
        self._stamp: Stamp = ()
        #: The certificate in use: its serial (hex) and when it expires (unix time).
        self.serial = ""
        self.not_after = 0.0

    def changed(self) -> bool:
        """Whether the files changed since the last :meth:`credentials` call."""
        return self.files.stamp() != self._stamp

    def rotated(self) -> bool:
        """Whether the files changed and now hold a usable certificate and key (a rotation
        half done, certificate written but not yet its key, is not one)."""
        if not self.changed():
            return False
        try:
            load_material(self.files)
        except TLSConfigError as error:
            log.warning("new site certificate not used yet: %s", error)
            return False
        return True

    def credentials(self) -> grpc.ChannelCredentials:
        self._stamp = self.files.stamp()
        material = load_material(self.files)
        serial = f"{material.serial:x}"
        if serial != self.serial:
            log.info(
                "site certificate in use: %s, serial %s, expires %s",
                self.files.cert, serial, material.not_after.isoformat(timespec="seconds"),
            )  # fmt: skip
        self.serial, self.not_after = serial, material.not_after.timestamp()
        return grpc.ssl_channel_credentials(material.ca_pem, material.key_pem, material.cert_pem)

    def channel_options(self) -> list[tuple[str, str]]:
        if self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []
