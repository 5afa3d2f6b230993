"""``rbridge``: entry point, argument parsing and the error contract.

User errors print one line on stderr, no traceback: exit 2 for usage errors, 1 for everything
else that went wrong (an invalid policy, a failing test, a bundle that does not verify).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from bridge import __version__
from bridge.cli import (
    audit_cmd,
    certs_cmd,
    keys_cmd,
    nats_cmd,
    policy_cmd,
    probe_cmd,
    runtime_cmd,
    up_cmd,
)
from bridge.errors import PolicyLoadError, RbridgeError, UsageError

EXIT_FAILURE = 1
EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> Parser:
    parser = Parser(
        prog="rbridge",
        description="Residency Bridge: policy-controlled gateway from on-prem agents to cloud compute.",
    )
    parser.add_argument("--version", action="version", version=f"rbridge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    policy_cmd.register(commands)
    keys_cmd.register(commands)
    certs_cmd.register(commands)
    audit_cmd.register(commands)
    runtime_cmd.register(commands)
    nats_cmd.register(commands)
    up_cmd.register(commands)
    probe_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    prog = f"rbridge {' '.join(getattr(arguments, 'command_path', [arguments.command]))}"
    try:
        code: int = arguments.run(arguments)
    except PolicyLoadError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        count = len(error.problems)
        print(f"{prog}: {count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return EXIT_FAILURE
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RbridgeError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); silence the interpreter's own complaint.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except Exception as error:
        if os.environ.get("RBRIDGE_DEBUG"):
            raise
        print(
            f"{prog}: internal error: {type(error).__name__}: {error} (set RBRIDGE_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return 70
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
