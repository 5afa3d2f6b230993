"""NATS subject patterns: validation, matching and subsumption, in one place.

Tokens are separated by ``.``; ``*`` matches exactly one token and ``>`` one or more trailing
tokens. Wildcards are whole tokens only (``ab*`` is refused rather than read as a literal, since a
policy author who writes it almost certainly meant a wildcard).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SUBJECT_LENGTH = 256
# Whitespace and control characters (space, tab, CR, LF, NUL, every C0 control and DEL).
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
# U+FFFD, what reading a subject that is not UTF-8 puts where its bad bytes were: such a subject
# is refused, not matched as some other subject.
_NOT_UTF8 = "\ufffd"
# A concrete subject of ordinary tokens (no wildcard character, no whitespace or control
# character, no empty token) is valid whatever the mode: one match instead of a look at every
# character, for the per-message checks (reply subjects, capabilities).
_PLAIN_SUBJECT = re.compile(r"[^\x00-\x20\x7f.*>\ufffd]+(?:\.[^\x00-\x20\x7f.*>\ufffd]+)*")


def subject_error(subject: str, *, pattern: bool) -> str | None:
    """Why ``subject`` is not a valid subject (or pattern, with wildcards), or None if it is."""
    if not subject:
        return "empty subject"
    if len(subject) > MAX_SUBJECT_LENGTH:
        return f"subject of {len(subject)} characters exceeds the limit of {MAX_SUBJECT_LENGTH}"
    if _PLAIN_SUBJECT.fullmatch(subject) is not None:
        return None
    if _FORBIDDEN.search(subject) is not None:
        return "subjects may not contain whitespace or control characters"
    if _NOT_UTF8 in subject:
        return "the subject is not valid UTF-8 (U+FFFD stands for bytes that were not)"
    tokens = subject.split(".")
    for position, token in enumerate(tokens):
        if not token:
            return "empty token (leading, trailing or doubled '.')"
        if token in ("*", ">"):
            if not pattern:
                return f"wildcard {token!r} is not allowed in a concrete subject"
            if token == ">" and position != len(tokens) - 1:
                return "'>' may only be the last token"
        elif "*" in token or ">" in token:
            return f"wildcards must be whole tokens, got {token!r}"
    return None


@dataclass(frozen=True, slots=True)
class SubjectPattern:
    """A validated subject pattern, split into tokens once."""

    text: str
    tokens: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> SubjectPattern:
        problem = subject_error(text, pattern=True)
        if problem is not None:
            raise ValueError(problem)
        return cls(text, tuple(text.split(".")))

    def matches(self, subject_tokens: tuple[str, ...] | list[str]) -> bool:
        """Whether a concrete subject, already split on '.', matches this pattern."""
        pattern = self.tokens
        for index, token in enumerate(pattern):
            if token == ">":
                return len(subject_tokens) > index
            if index >= len(subject_tokens):
                return False
            if token != "*" and token != subject_tokens[index]:
                return False
        return len(subject_tokens) == len(pattern)

    def covers(self, other: SubjectPattern) -> bool:
        """Whether every subject that ``other`` matches is also matched by this pattern."""
        mine, theirs = self.tokens, other.tokens
        for index, token in enumerate(mine):
            if token == ">":
                return len(theirs) > index
            if index >= len(theirs):
                return False
            their = theirs[index]
            if their == ">":
                return False
            if token != "*" and (their == "*" or token != their):
                return False
        return len(theirs) == len(mine)


def matches(pattern: str, subject: str) -> bool:
    """Convenience: whether ``subject`` matches ``pattern`` (both given as text)."""
    return SubjectPattern.parse(pattern).matches(subject.split("."))


#: First tokens of local subjects that belong to the bridge and NATS, never to agents.
RESERVED_FIRST_TOKENS = ("rb", "_INBOX")


def reserved_subject_error(subject: str) -> str | None:
    """Why ``subject`` (or pattern) could reach the bridge's own or NATS's subjects, or None.

    Cloud-initiated requests may only address agents' subjects: anything under ``rb.`` (the
    bridge's streams), ``$`` (the NATS and JetStream APIs) or ``_INBOX.`` (other agents' replies)
    is refused, and so is a leading wildcard, which would match them too.
    """
    first = subject.split(".", 1)[0]
    if first in ("*", ">"):
        return "a leading wildcard would also match the bridge's and NATS's own subjects"
    if first in RESERVED_FIRST_TOKENS or first.startswith("$"):
        return f"subjects under {first!r} belong to the bridge or NATS, not to agents"
    return None
