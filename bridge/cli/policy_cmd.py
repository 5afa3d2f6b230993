"""``rbridge policy``: check, test, explain, schema, sign, verify, keygen."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from bridge.cli.render import print_explanation
from bridge.errors import BundleError, UsageError
from bridge.keys import FileKeyStore
from bridge.keys.signing import generate_signing_keys, load_private_key, load_public_key
from bridge.policy import (
    CaseReport,
    Engine,
    KeyRing,
    LoadedPolicy,
    MemoryKeyRing,
    Message,
    explain,
    json_schema,
    load_policies,
    load_policy_file,
    run_cases,
    sign_bundle,
    verify_bundle,
)
from bridge.policy.explain import explanation_json
from bridge.policy.loader import policy_files

MAX_PAYLOAD_FILE_BYTES = 64 << 20


def register(commands: Any) -> None:
    policy = commands.add_parser("policy", help="check, test, explain and sign residency policies")
    sub = policy.add_subparsers(dest="policy_command", metavar="ACTION", parser_class=type(policy))
    sub.required = True

    def command(name: str, help_text: str, run: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=help_text
        )
        parser.set_defaults(run=run, command_path=["policy", name])
        return parser

    check = command("check", "validate policy files; list every problem", _check)
    check.add_argument("paths", nargs="+", metavar="PATH", help="policy files or directories")
    check.add_argument(
        "--keys", metavar="DIR", help="also check that the key store holds every key named"
    )

    test = command("test", "run the test cases in policy files", _test)
    test.add_argument("paths", nargs="+", metavar="PATH", help="policy files or directories")
    test.add_argument("--keys", metavar="DIR", help="key store to use (default: throw-away keys)")

    explain_parser = command("explain", "show how a policy decides one message", _explain)
    explain_parser.add_argument("--policy", required=True, metavar="PATH", help="policy file")
    explain_parser.add_argument(
        "--subject", required=True, help="capability subject, e.g. docs.parse"
    )
    explain_parser.add_argument(
        "--header", action="append", default=[], metavar="K=V", help="a message header (repeatable)"
    )
    explain_parser.add_argument(
        "--payload", metavar="FILE", help="JSON payload file, or - for standard input (default: {})"
    )
    explain_parser.add_argument("--json", action="store_true", help="print one JSON object")
    explain_parser.add_argument(
        "--keys", metavar="DIR", help="key store to use (default: throw-away keys)"
    )

    schema = command("schema", "print the JSON Schema of policy files", _schema)
    schema.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")

    sign = command("sign", "write a signed bundle of policy files", _sign)
    sign.add_argument("paths", nargs="+", metavar="PATH", help="policy files or directories")
    sign.add_argument("--key", required=True, metavar="PRIVATE", help="Ed25519 private key (PEM)")
    sign.add_argument(
        "--revision",
        required=True,
        type=_positive_int,
        metavar="N",
        help="bundle revision (rollback is refused)",
    )
    sign.add_argument("--out", required=True, metavar="BUNDLE", help="bundle file to write")

    verify = command("verify", "verify a signed bundle", _verify)
    verify.add_argument("bundle", metavar="BUNDLE")
    verify.add_argument(
        "--pubkey", required=True, metavar="PUBLIC", help="Ed25519 public key (PEM)"
    )

    keygen = command("keygen", "make an Ed25519 key pair for signing bundles", _keygen)
    keygen.add_argument("--out", required=True, metavar="DIR", help="directory for the key pair")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _require_paths(paths: list[str]) -> None:
    for path in paths:
        if not Path(path).exists():
            raise UsageError(f"no such file or directory: {path}")


def _keyring(loaded: list[LoadedPolicy], key_dir: str | None) -> KeyRing:
    if key_dir is not None:
        if not Path(key_dir).is_dir():
            raise UsageError(f"key directory {key_dir} does not exist")
        return FileKeyStore(key_dir)
    return MemoryKeyRing.ephemeral({name for item in loaded for name in item.policy.spec.keys})


def _check(arguments: argparse.Namespace) -> int:
    _require_paths(arguments.paths)
    loaded = load_policies(arguments.paths)
    if arguments.keys is not None:
        keys = _keyring(loaded, arguments.keys)
        for item in loaded:
            Engine(item.policy, keys)
    for item in loaded:
        policy = item.policy
        print(
            f"ok: {item.file}: policy {policy.metadata.name!r} revision {policy.metadata.revision}, {len(policy.spec.rules)} rules, {len(policy.spec.tests)} tests"
        )
    return 0


def _test(arguments: argparse.Namespace) -> int:
    _require_paths(arguments.paths)
    loaded = load_policies(arguments.paths)
    keys = _keyring(loaded, arguments.keys)
    report = CaseReport()
    for item in loaded:
        run_cases(item, Engine(item.policy, keys), report)
    print_case_report(report)
    return 0 if report.failed == 0 else 1


def print_case_report(report: CaseReport) -> None:
    for result in report.results:
        if result.passed:
            continue
        print(f"FAIL {result.file}:{result.line}: {result.policy}: {result.name}")
        for failure in result.failures:
            print(f"    {failure}")
    for policy, rule in report.unexercised:
        print(f"note: {policy}: rule {rule!r} is not exercised by any test case")
    print(f"{report.passed} passed, {report.failed} failed")


def _read_payload(source: str | None) -> bytes:
    if source is None:
        return b"{}"
    if source == "-":
        data = sys.stdin.buffer.read(MAX_PAYLOAD_FILE_BYTES + 1)
    else:
        try:
            with open(source, "rb") as handle:
                data = handle.read(MAX_PAYLOAD_FILE_BYTES + 1)
        except OSError as error:
            raise UsageError(f"cannot read payload file {source}: {error.strerror}") from None
    if len(data) > MAX_PAYLOAD_FILE_BYTES:
        raise UsageError(f"payload file is larger than {MAX_PAYLOAD_FILE_BYTES} bytes")
    return data


def _headers(pairs: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise UsageError(f"--header expects NAME=VALUE, got {pair!r}")
        if any(ch in pair for ch in "\r\n\x00"):
            raise UsageError("header names and values may not contain CR, LF or NUL")
        headers[name] = value
    return headers


def _explain(arguments: argparse.Namespace) -> int:
    _require_paths([arguments.policy])
    headers = _headers(arguments.header)
    payload = _read_payload(arguments.payload)
    loaded = load_policy_file(arguments.policy)
    engine = Engine(loaded.policy, _keyring([loaded], arguments.keys))
    explanation = explain(engine, Message(arguments.subject, payload, headers))
    if arguments.json:
        print(json.dumps(explanation_json(explanation), indent=2, ensure_ascii=False))
    else:
        print_explanation(
            explanation, throwaway_keys=arguments.keys is None, color=sys.stdout.isatty()
        )
    return 0


def _schema(arguments: argparse.Namespace) -> int:
    text = schema_text()
    if arguments.out:
        Path(arguments.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def _sign(arguments: argparse.Namespace) -> int:
    _require_paths(arguments.paths)
    private_key = load_private_key(arguments.key)
    loaded = load_policies(arguments.paths)
    report = CaseReport()
    keys = _keyring(loaded, None)
    for item in loaded:
        run_cases(item, Engine(item.policy, keys), report)
    if report.failed:
        print_case_report(report)
        raise BundleError(f"refusing to sign: {report.failed} policy test case(s) fail")
    files: dict[str, bytes] = {}
    for path in policy_files(arguments.paths):
        if path.name in files:
            raise UsageError(
                f"two policy files are named {path.name!r}; bundle file names must be unique"
            )
        files[path.name] = path.read_bytes()
    names = tuple(item.policy.metadata.name for item in loaded)
    data = sign_bundle(files, arguments.revision, private_key, names)
    out = Path(arguments.out)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(out)
    print(f"signed {len(files)} file(s) as revision {arguments.revision}: {out}")
    return 0


def _verify(arguments: argparse.Namespace) -> int:
    _require_paths([arguments.bundle])
    public_key = load_public_key(arguments.pubkey)
    try:
        data = Path(arguments.bundle).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read bundle {arguments.bundle}: {error.strerror}") from None
    bundle = verify_bundle(data, public_key)
    policies = ", ".join(bundle.policies) if bundle.policies else "not named (an older bundle)"
    print(f"ok: revision {bundle.revision}, signed by key {bundle.key_id} on {bundle.created}")
    print(f"    policies: {policies}")
    for name, content in sorted(bundle.files.items()):
        print(f"    {name} ({len(content)} bytes)")
    return 0


def _keygen(arguments: argparse.Namespace) -> int:
    private_path, public_path = generate_signing_keys(arguments.out)
    print(f"private key: {private_path} (keep it with the security team, mode 0600)")
    print(f"public key:  {public_path} (edge bridges verify bundles with it)")
    return 0
