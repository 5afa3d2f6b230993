"""Revocation the gateway checks itself: a CRL and a deny list of site ids, reloaded on change.

grpcio cannot check CRLs during the handshake, so the gateway checks each stream's peer after
it: the certificate's serial against the CRL (whose signature must verify with the pinned CA)
and the site against the deny list (one site name or spiffe id per line, '#' comments). Both
files are re-read when they change; a file that fails to load keeps the previous lists and is
reported, so a bad edit cannot silently un-revoke a site.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from bridge.errors import RbridgeError
from bridge.link.identity import SiteIdentity

log = logging.getLogger("rbridge.link.revocation")


class RevocationError(RbridgeError):
    """The CRL or deny list cannot be used."""


def _stamp(path: Path | None) -> tuple[int, int, int]:
    if path is None:
        return (0, 0, 0)
    try:
        info = os.stat(path)
    except OSError:
        return (-1, 0, 0)
    return (info.st_ino, info.st_mtime_ns, info.st_size)


@dataclass(slots=True)
class Revocations:
    """The current CRL serials and denied sites; :meth:`refresh` picks up changes on disk."""

    ca_pem: bytes
    crl_path: Path | None = None
    deny_path: Path | None = None
    serials: frozenset[int] = frozenset()
    denied: frozenset[str] = frozenset()
    generation: int = 0
    _stamps: tuple[tuple[int, int, int], tuple[int, int, int]] = field(
        default=((0, 0, 0), (0, 0, 0))
    )

    def __post_init__(self) -> None:
        # At start a broken file is an error, not a warning: the gateway must not come up
        # believing nothing is revoked.
        self._load_crl()
        self._load_deny()
        self._stamps = (_stamp(self.crl_path), _stamp(self.deny_path))

    def refresh(self) -> bool:
        """Re-read whichever file changed; True when the lists changed."""
        stamps = (_stamp(self.crl_path), _stamp(self.deny_path))
        if stamps == self._stamps:
            return False
        before = (self.serials, self.denied)
        try:
            if stamps[0] != self._stamps[0]:
                self._load_crl()
            if stamps[1] != self._stamps[1]:
                self._load_deny()
        except RevocationError as error:
            log.error("revocation lists not reloaded, keeping the previous ones: %s", error)
            return False
        self._stamps = stamps
        changed = before != (self.serials, self.denied)
        if changed:
            self.generation += 1
            log.info(
                "revocation lists reloaded: %d revoked serials, %d denied sites",
                len(self.serials),
                len(self.denied),
            )
        return changed

    def _load_crl(self) -> None:
        if self.crl_path is None:
            return
        try:
            crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
        except OSError as error:
            raise RevocationError(
                f"cannot read the CRL {self.crl_path}: {error.strerror}"
            ) from None
        except ValueError:
            raise RevocationError(f"{self.crl_path} is not a PEM CRL") from None
        authorities = x509.load_pem_x509_certificates(self.ca_pem)
        if not any(crl.issuer == ca.subject and _signed_by(crl, ca) for ca in authorities):
            raise RevocationError(f"the CRL {self.crl_path} is not signed by the pinned CA")
        self.serials = frozenset(entry.serial_number for entry in crl)

    def _load_deny(self) -> None:
        if self.deny_path is None:
            return
        try:
            text = self.deny_path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise RevocationError(f"cannot read the deny list {self.deny_path}: {error}") from None
        entries = {line.split("#", 1)[0].strip() for line in text.splitlines()}
        self.denied = frozenset(entry for entry in entries if entry)

    def refusal(self, identity: SiteIdentity) -> str | None:
        """Why ``identity`` may not connect (revoked serial, denied site), or None."""
        if identity.serial in self.serials:
            return f"certificate serial {identity.serial:x} is revoked"
        if identity.site in self.denied or identity.uri in self.denied:
            return f"site {identity.site!r} is on the deny list"
        return None


def _signed_by(crl: x509.CertificateRevocationList, authority: x509.Certificate) -> bool:
    key: Any = authority.public_key()
    try:
        return crl.is_signature_valid(key)
    except (TypeError, ValueError):
        return False
