"""Where the edge bridge may publish for an agent: replies and deny notices, nowhere else.

An agent names the subject it wants answers on in ``Rb-Reply-To``. The bridge publishes there
with its own credentials, so a subject it did not vet would let any agent make the bridge act
for it: purge a stream through the JetStream API, write into ``rb.out`` or ``rb.in``. A reply
subject is therefore accepted only if it is a concrete subject, outside the NATS API (``$…``) and
the bridge's own subjects (``rb.…``), and inside the patterns the operator allows (by default
``_INBOX.>``, where the SDKs receive answers). A message with any other reply subject is still
decided and forwarded or denied; it just gets no reply route, and the audit says why.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.policy.subjects import SubjectPattern, subject_error

DEFAULT_REPLY_SUBJECTS = ("_INBOX.>",)
_RESERVED_FIRST = ("rb",)


def reserved_reply_problem(subject: str) -> str | None:
    """Why ``subject`` (or a pattern) reaches the NATS API or the bridge's subjects, or None."""
    first = subject.split(".", 1)[0]
    if first in ("*", ">"):
        return "a leading wildcard would reach the NATS API and the bridge's own subjects"
    if first.startswith("$"):
        return f"subjects under {first!r} are the NATS API"
    if first in _RESERVED_FIRST:
        return f"subjects under {first!r} belong to the bridge"
    return None


class ReplySubjects:
    """The operator's allowed reply subjects, checked against each ``Rb-Reply-To``."""

    def __init__(self, patterns: Sequence[str] = DEFAULT_REPLY_SUBJECTS) -> None:
        for pattern in patterns:
            problem = subject_error(pattern, pattern=True) or reserved_reply_problem(pattern)
            if problem is not None:
                raise ValueError(f"reply subject pattern {pattern!r}: {problem}")
        self.patterns = tuple(SubjectPattern.parse(pattern) for pattern in patterns)

    def refusal(self, subject: str) -> str | None:
        """Why the bridge will not publish on ``subject`` (a reason code), or None if it may."""
        if subject_error(subject, pattern=False) is not None:
            return "reply-subject-invalid"
        if reserved_reply_problem(subject) is not None:
            return "reply-subject-reserved"
        tokens = subject.split(".")
        if not any(pattern.matches(tokens) for pattern in self.patterns):
            return "reply-subject-not-allowed"
        return None
