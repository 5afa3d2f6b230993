"""``rbridge certs dev``: development certificates for the link."""

from __future__ import annotations

import argparse
import ipaddress
import re
from pathlib import Path
from typing import Any

from cryptography import x509

from bridge.errors import UsageError
from bridge.link.pki import (
    DEFAULT_TRUST_DOMAIN,
    Authority,
    Issued,
    write_dev_pki,
    write_private,
    write_public,
)

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

    issue = sub.add_parser(
        "issue",
        help="issue one more site or gateway certificate from an existing development CA",
        description="Issue certificates from the development CA in --ca-dir (ca.pem, ca.key): "
        "a new site, a replacement for a site (rotation), or a gateway certificate for other "
        "names. Private keys are written mode 0600; existing files are kept unless --force.",
    )
    issue.add_argument("--ca-dir", required=True, metavar="DIR", help="where ca.pem and ca.key are")
    issue.add_argument("--out", metavar="DIR", help="directory to write into (default: --ca-dir)")
    issue.add_argument(
        "--site", action="append", default=[], metavar="NAME", help="a site (repeatable)"
    )
    issue.add_argument("--gateway", action="store_true", help="a gateway certificate")
    issue.add_argument(
        "--host", action="append", default=[], metavar="NAME",
        help="a DNS name of the gateway (repeatable; default localhost)",
    )  # fmt: skip
    issue.add_argument(
        "--ip", action="append", default=[], metavar="ADDRESS",
        help="an IP address of the gateway (repeatable; default 127.0.0.1 and ::1 with no --host)",
    )  # fmt: skip
    issue.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN, metavar="D")
    issue.add_argument("--days", type=int, default=365, metavar="N")
    issue.add_argument("--force", action="store_true", help="replace existing files")
    issue.set_defaults(run=_issue, command_path=["certs", "issue"])


def _check_common(arguments: argparse.Namespace) -> None:
    """Site names, trust domain and validity, as both commands take them."""
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


def _dev(arguments: argparse.Namespace) -> int:
    _check_common(arguments)
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


def _issue(arguments: argparse.Namespace) -> int:
    if not arguments.site and not arguments.gateway:
        raise UsageError("name at least one --site, or --gateway")
    _check_common(arguments)
    for host in arguments.host:
        if not _DOMAIN.match(host):
            raise UsageError(f"invalid host name {host!r}: a lower-case DNS name")
    for address in arguments.ip:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise UsageError(f"invalid IP address {address!r}") from None
    try:
        authority = Authority.load(Path(arguments.ca_dir))
    except ValueError as error:
        raise UsageError(str(error)) from None
    out = Path(arguments.out or arguments.ca_dir)
    out.mkdir(parents=True, exist_ok=True)
    planned: list[tuple[str, Path, Path, Issued]] = []
    for site in arguments.site:
        issued = authority.site(site, arguments.trust_domain, days=arguments.days)
        planned.append(
            (
                f"spiffe://{arguments.trust_domain}/site/{site}",
                out / f"site-{site}.pem",
                out / f"site-{site}.key",
                issued,
            )
        )
    if arguments.gateway:
        hosts = arguments.host or ["localhost"]
        ips = arguments.ip or ([] if arguments.host else ["127.0.0.1", "::1"])
        issued = authority.gateway(hosts=hosts, ips=ips, days=arguments.days)
        planned.append(
            (", ".join([*hosts, *ips]), out / "gateway.pem", out / "gateway.key", issued)
        )
    existing = [str(path) for _, cert, key, _ in planned for path in (cert, key) if path.exists()]
    if existing and not arguments.force:
        raise UsageError(f"{', '.join(existing)} exist; pass --force to replace them")
    for names, cert, key, issued in planned:
        write_private(key, issued.key_pem)  # the key first: a watcher sees a usable pair last
        write_public(cert, issued.cert_pem)
        serial = x509.load_pem_x509_certificate(issued.cert_pem).serial_number
        print(f"{cert} (key {key}): {names}, serial {serial:x}, valid {arguments.days} days")
    return 0
