"""What can go wrong when an agent asks, and whether waiting can help.

    AgentError                 base; ``retriable`` says whether trying again later can help
    ├── Denied                 the bridge's policy refused to send it (``rule``, ``reason``)
    ├── TimedOut               no answer within the timeout
    ├── Unavailable            nobody to ask: no responder, NATS down, no ``RB_OUT`` stream
    └── HandlerFailed          the agent that took it failed on every attempt (``error``)

Messages name subjects, rules and error types; never a payload value.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of the errors an agent gets back; ``retriable`` is True when a retry may succeed."""

    retriable: bool = False


class Denied(AgentError):
    """The bridge refused to send the message to the cloud, and said which rule and why.

    >>> str(Denied("docs.medical.scan", "health-data-stays-home", "rule:health-data-stays-home"))
    "docs.medical.scan was denied by rule 'health-data-stays-home' (rule:health-data-stays-home)"
    """

    def __init__(self, capability: str, rule: str, reason: str, detail: str = "") -> None:
        self.capability, self.rule, self.reason, self.detail = capability, rule, reason, detail
        why = f"{reason}: {detail}" if detail else reason
        super().__init__(f"{capability} was denied by rule {rule!r} ({why})")


class TimedOut(AgentError):
    """No answer arrived within ``timeout`` seconds."""

    retriable = True

    def __init__(self, subject: str, timeout: float) -> None:
        self.subject, self.timeout = subject, timeout
        super().__init__(f"no answer on {subject} within {timeout:g} s")


class Unavailable(AgentError):
    """Nobody could take the message: no agent serves the subject, or NATS or the stream is down."""

    retriable = True

    def __init__(self, subject: str, why: str) -> None:
        self.subject, self.why = subject, why
        super().__init__(f"{subject} is unavailable: {why}")


class HandlerFailed(AgentError):
    """The agent that took the message failed on every attempt; ``error`` is its error type."""

    def __init__(self, subject: str, error: str) -> None:
        self.subject, self.error = subject, error
        super().__init__(f"the handler of {subject} failed: {error}")
