"""Every exception the bridge raises on purpose, in one place.

    RbridgeError                      base; ``retriable`` says whether trying again can help
    ├── PolicyLoadError               a policy file or directory is invalid (carries every Problem)
    ├── KeyStoreError                 the on-prem key store is missing, unsafe or unreadable
    │   └── UnknownKeyError           a policy names a key the store does not hold
    ├── BundleError                   a signed policy bundle is malformed or fails verification
    └── UsageError                    a command-line argument or input file is wrong

A *deny* is never an exception: the policy engine returns it as a value. These errors are for
operators and authors, and their messages name the offending value (never a sensitive one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class RbridgeError(Exception):
    """Base of all deliberate errors; ``retriable`` is False unless waiting can fix it."""

    retriable: bool = False


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found while loading a policy, with its place in the source."""

    file: str
    line: int
    column: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.code}: {self.message}"


class PolicyLoadError(RbridgeError):
    """A policy could not be loaded; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        first = str(self.problems[0]) if self.problems else "no details"
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(f"{first}{more}")


class KeyStoreError(RbridgeError):
    """The key store cannot be used as it is (permissions, format, missing directory)."""


class UnknownKeyError(KeyStoreError):
    """A key name or version that the key store does not hold."""


class BundleError(RbridgeError):
    """A policy bundle is malformed, tampered with, or signed by another key."""


class UsageError(RbridgeError):
    """A command-line argument or an input file given on the command line is wrong."""
