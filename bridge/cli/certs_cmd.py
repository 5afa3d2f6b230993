"""``rbridge certs dev``: development certificates for the link."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from bridge.errors import UsageError
from bridge.link.pki import DEFAULT_TRUST_DOMAIN, write_dev_pki

_SITE = re.compile(r"^[a-z0-9][a-z0-9\-]{0,62}$")
_DOMAIN = re.compile(
    r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?)*$"
)


def register(commands: Any) -> None:
    certs = commands.add_parser("certs", help="certificates for the link")
    sub = certs.add_subparsers(dest="certs_command", metavar="ACTION", parser_class=type(certs))
    sub.required = True
    dev = sub.add_parser(
        "dev",
        help="make a development CA, a gateway certificate, site certificates and a CRL",
        description="Make a development CA, a gateway certificate (localhost, 127.0.0.1, ::1), one "
        "client certificate per site, and an empty CRL. Private keys are written mode 0600. "
        "For development only.",
    )
    dev.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    dev.add_argument(
        "--site", action="append", required=True, metavar="NAME", help="a site name (repeatable)"
    )
    dev.add_argument(
        "--trust-domain",
        default=DEFAULT_TRUST_DOMAIN,
        metavar="D",
        help=f"SPIFFE trust domain (default {DEFAULT_TRUST_DOMAIN})",
    )
    dev.add_argument(
        "--days",
        type=int,
        default=365,
        metavar="N",
        help="validity of the leaf certificates (default 365)",
    )
    dev.add_argument(
        "--force", action="store_true", help="replace an existing development CA in DIR"
    )
    dev.set_defaults(run=_dev, command_path=["certs", "dev"])


def _dev(arguments: argparse.Namespace) -> int:
    for site in arguments.site:
        if not _SITE.match(site):
            raise UsageError(
                f"invalid site name {site!r}: lower-case letters, digits and '-', at most 63"
            )
    if len(set(arguments.site)) != len(arguments.site):
        raise UsageError("a site is named twice")
    if not _DOMAIN.match(arguments.trust_domain):
        raise UsageError(
            f"invalid trust domain {arguments.trust_domain!r}: a lower-case DNS name such as example.org"
        )
    if not 1 <= arguments.days <= 3650:
        raise UsageError(f"--days must be between 1 and 3650, got {arguments.days}")
    out = Path(arguments.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    if (out / "ca.pem").exists() and not arguments.force:
        raise UsageError(f"{out} already holds a development CA; pass --force to replace it")
    files = write_dev_pki(
        out, arguments.site, trust_domain=arguments.trust_domain, days=arguments.days
    )
    print(f"CA:       {files.ca} (key {out / 'ca.key'}, mode 0600)")
    print(f"CRL:      {files.crl}")
    print(f"gateway:  {files.gateway_cert} (key {files.gateway_key}) for localhost, 127.0.0.1, ::1")
    for site, (cert, key) in files.sites.items():
        print(f"site:     {cert} (key {key}) = spiffe://{arguments.trust_domain}/site/{site}")
    return 0
