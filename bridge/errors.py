"""Every exception the bridge raises on purpose: the whole tree, and where each class lives.

The base and the errors of the policy core are defined here; the others live beside the code
that raises them and derive from :class:`RbridgeError` (``tests/unit/test_layout.py`` fails
when a class of the package is missing from this tree or outside it).

    RbridgeError                      base; ``retriable`` says whether trying again can help
    ├── PolicyLoadError               a policy file or directory is invalid (carries every Problem)
    ├── KeyStoreError                 the on-prem key store is missing, unsafe or unreadable
    │   └── UnknownKeyError           a policy names a key the store does not hold
    ├── BundleError                   a signed policy bundle is malformed or fails verification
    ├── UsageError                    a command-line argument or input file is wrong
    ├── PayloadError (ValueError)     policy.payload: a payload the engine refuses (its code)
    ├── HeaderConflict (ValueError)   contract: one Rb-* header in two spellings and values
    ├── ConfigError                   runtime.config: a runtime's settings are invalid (every one)
    ├── StreamConfigError             runtime.streams: a stream cannot take the bridge's settings
    ├── NatsServerError               natsserver: nats-server missing, or not up in time
    ├── NatsConnectError              natsconnect: the first connection failed in time (retriable)
    ├── ConsumerLost                  natsconsume: the durable consumer is gone (retriable)
    ├── AuditWriteError               audit.trail: the trail cannot be written (retriable)
    │   └── AuditInUseError           audit.trail: another process writes the same trail
    ├── TLSConfigError                link.tls: a certificate, key or CA file cannot be used
    ├── RevocationError               link.revocation: the CRL or deny list cannot be used
    ├── IdentityError                 link.identity: a peer certificate names no acceptable site
    ├── NotConnected                  link.gateway: no stream from that site here (retriable)
    ├── OutboxClosed                  link.outbox: the link is stopping
    ├── DuplicateInFlight (ValueError) link.outbox: that envelope id already awaits its answer
    ├── SpentTokensUnavailable        edge.tokens: a spend was not stored (retriable)
    ├── AgainRequestError (ValueError) edge.delivered: an rb.replies.again request is garbage
    ├── StackError                    up.stack: a part of `rbridge up` did not come up
    └── CloudAgentUnavailable         cloud_agent: the cloud agent SDK cannot reach NATS

Private control flow, never raised out of its module: ``edge.bridge.Refused`` (an inbound
envelope refused, with its answer) and ``policy.shadowing._OutOfTime``. The edge agent SDK's
errors (``edge_agent.errors``: ``AgentError`` and its subclasses) are its public API, apart.

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
